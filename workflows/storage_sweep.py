"""The storage sweep: acts on the clean-ups ended jobs left due (``jobsheet/jobs/cleanup.py``).

A Temporal Schedule (``jobsheet/jobs/sweep_schedule.py``) starts one run every
``JOBSHEET_SWEEP_INTERVAL_SECONDS``, never two at once; a run sweeps until nothing due is left.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.sweep import SweepActivities
    from jobsheet.jobs.cleanup import SweepReport

SWEEP_TIMEOUT = timedelta(minutes=10)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
MAX_ROUNDS = 100


@workflow.defn
class StorageSweepWorkflow:
    """One sweep of every due clean-up marker."""

    @workflow.run
    async def run(self) -> SweepReport:
        total = SweepReport()
        for _ in range(MAX_ROUNDS):
            report = await workflow.execute_activity_method(
                SweepActivities.sweep_storage,
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=RETRY,
                summary="delete what ended jobs no longer keep",
            )
            total.done += report.done
            total.deleted_objects += report.deleted_objects
            total.pending = report.pending
            if not report.pending:
                break
        return total
