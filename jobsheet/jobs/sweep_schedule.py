"""The Temporal Schedule that starts the storage sweep (``workflows/storage_sweep.py``).

The jobs worker makes sure it exists when it starts (creating it, or updating its interval);
an operator can pause it, trigger it or read its past runs in the Web UI's Schedules page.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from jobsheet.core.settings import Settings

SWEEP_WORKFLOW = "StorageSweepWorkflow"


def sweep_schedule_id(settings: Settings) -> str:
    return f"storage-sweep-{settings.task_queue_jobs}"


def sweep_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SWEEP_WORKFLOW,
            id=sweep_schedule_id(settings),
            task_queue=settings.task_queue_jobs,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(seconds=settings.sweep_interval_seconds))
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_sweep_schedule(client: Client, settings: Settings) -> str:
    """Create the sweep's schedule, or bring an existing one to these settings; its id."""
    schedule_id = sweep_schedule_id(settings)
    schedule = sweep_schedule(settings)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
    return schedule_id
