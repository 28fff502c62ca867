"""Upgrading the job sheet workflow under jobs in flight (docs/workflow-upgrades.md).

Version A is today's ``JobSheetWorkflow``. Version B is the same workflow type with a change to
its commands behind ``workflow.patched``: once the wait for the trigger is over, it runs one
more local activity and notes "version B" on the timeline. Jobs are put in flight on A (one awaiting its
upload, one running), A's jobs worker stops and B's starts, as when the jobs workers are
rolled; one job is submitted while no jobs worker runs and one after. Every job ends once, as
it should, with its money conserved; each job took the path its history calls for; every
history replays against B, while neither B without its patch nor A replays them all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from activities.jobs import JobActivities
from activities.storage import StorageActivities
from jobsheet.core.settings import Settings
from jobsheet.jobs.messages import JobStart, SubmitResult
from jobsheet.jobs.models import JobSheet, JobState, TimelineEntry
from jobsheet.jobs.operations import job_handle, trigger_run
from tests.jobs.conftest import RECORD_ENV, TEST_CALCULATIONS, Deployment, deployment
from tests.markers import marker_dir_fixture  # noqa: F401 (the marker_dir fixture)
from workflows.job_sheet import JobSheetWorkflow

UPGRADE_PATCH = "upgrade-test-extra-note"
VERSION_B_NOTE = "version B: the upgrade's extra step ran"


@activity.defn
async def note_version_b(uid: str) -> str:
    """Version B's extra step (a local activity on the jobs worker, as the job's short steps)."""
    return VERSION_B_NOTE


async def _version_b_step(job: JobSheetWorkflow) -> None:
    """What version B adds: a command (a local activity) and its note on the timeline."""
    note = await workflow.execute_local_activity(
        note_version_b, job.sheet.uid, start_to_close_timeout=timedelta(seconds=10)
    )
    job.sheet.timeline.append(TimelineEntry(state=job.sheet.state, at=workflow.now(), note=note))


# Test-only versions registered under the real workflow type. Unsandboxed: the sandbox would
# re-import this test module (as tests/compute/test_contract_book_timers.py's legacy book).


@workflow.defn(name="JobSheetWorkflow", sandboxed=False)
class JobSheetWorkflowB(JobSheetWorkflow):
    """Version B: the change, behind its patch."""

    @workflow.run
    async def run(self, start: JobStart) -> JobSheet:
        return await super().run(start)

    async def _wait_for_trigger(self) -> bool:
        triggered = await super()._wait_for_trigger()
        if workflow.patched(UPGRADE_PATCH):
            await _version_b_step(self)
        return triggered


@workflow.defn(name="JobSheetWorkflow", sandboxed=False)
class UnpatchedJobSheetWorkflowB(JobSheetWorkflow):
    """Version B as it must not ship: the same change without the patch."""

    @workflow.run
    async def run(self, start: JobStart) -> JobSheet:
        return await super().run(start)

    async def _wait_for_trigger(self) -> bool:
        triggered = await super()._wait_for_trigger()
        await _version_b_step(self)
        return triggered


@contextlib.asynccontextmanager
async def jobs_worker(
    client: Client,
    settings: Settings,
    version: type[JobSheetWorkflow],
    executor: concurrent.futures.Executor,
) -> AsyncIterator[Worker]:
    """The jobs worker as worker.py builds it, running ``version`` of the job sheet; a
    nondeterministic replay fails the job at once instead of retrying until the test times out."""
    async with Worker(
        client,
        task_queue=settings.task_queue_jobs,
        workflows=[version],
        activities=[
            *StorageActivities(settings).all(),
            *JobActivities(client, settings).all(),
            note_version_b,
        ],
        activity_executor=executor,
        workflow_failure_exception_types=[NondeterminismError],
    ) as worker:
        yield worker


def patch_markers(history: WorkflowHistory) -> list[tuple[int, str]]:
    """(event id, patch id) of each patch marker in the history."""
    markers = []
    for event in history.events:
        details = event.marker_recorded_event_attributes.details
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and "patch-data" in details:
            markers.append(
                (event.event_id, json.loads(details["patch-data"].payloads[0].data)["id"])
            )
    return markers


def run_completed_at(history: WorkflowHistory) -> int:
    """The event id at which the run activity's result reached the history."""
    scheduled = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "run_calculation"
    ]
    return next(
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    )


async def replay_fails(
    client: Client, version: type[JobSheetWorkflow], history: WorkflowHistory
) -> bool:
    """Whether ``version`` fails to replay ``history`` (a nondeterminism error, or a recorded
    local activity result that does not fit the step now at its place)."""
    replayer = Replayer(workflows=[version], data_converter=client.data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure is not None


async def older_than(client: Client, env: Deployment, moment: datetime) -> set[str]:
    """This test's running job sheets started before ``moment``: the docs' step 4 query."""
    at = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    query = (
        f'WorkflowType="JobSheetWorkflow" AND ExecutionStatus="Running" AND StartTime < "{at}"'
        f' AND JobAccount="{env.payer}"'
    )
    return {execution.id async for execution in client.list_workflows(query)}


async def listed(client: Client, env: Deployment, moment: datetime, uids: set[str]) -> None:
    """Wait (visibility lags a little) until the step 4 query lists exactly ``uids``."""

    async def poll() -> None:
        while True:
            if await older_than(client, env, moment) == uids:
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(poll(), 10)


async def appears(path: Path) -> None:
    while True:
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.1)


async def upload_and_trigger(env: Deployment, submitted: SubmitResult, data: bytes) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data)).status_code == 200
    token = submitted.run_url.rsplit("/", 1)[1]
    assert (await trigger_run(env.client, submitted.uid, token)).started


async def ended(env: Deployment, uid: str) -> JobSheet:
    """The job's final sheet: the workflow's result (it completes when the job ends)."""
    return await asyncio.wait_for(job_handle(env.client, uid).result(), 45)


async def test_jobs_in_flight_survive_an_upgrade_and_replay(
    client: Client, job_settings: Settings, marker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Histories of a test-only version must not join the recorded ones that today's code replays.
    monkeypatch.delenv(RECORD_ENV, raising=False)
    settings = job_settings.model_copy(update={"calculations_file": TEST_CALCULATIONS})
    data = b"upgrade me\n" * 20
    marker = marker_dir / "running"
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
        async with deployment(client, settings, roles=("ledger", "compute")) as env:
            before = await env.balances()

            # On version A: one job awaiting its upload, one running (the run writes its marker,
            # then reports progress for six seconds).
            async with jobs_worker(client, settings, JobSheetWorkflow, executor):
                waiting = await env.submit(env.request(data, "echo", service="test"))
                running = await env.submit(
                    env.request(data, "steps", service="test", marker=str(marker))
                )
                await upload_and_trigger(env, running, data)
                await asyncio.wait_for(appears(marker), 20)
                assert (await env.sheet(running.uid)).state == JobState.RUNNING
            upgraded_at = datetime.now(UTC)
            last_on_a = {
                job.uid: (await client.get_workflow_handle(job.uid).fetch_history())
                .events[-1]
                .event_id
                for job in (waiting, running)
            }

            # No jobs worker runs: a submission waits for one. Then version B takes over.
            swap = asyncio.create_task(env.submit(env.request(data, "echo", service="test")))
            await asyncio.sleep(0.5)
            async with jobs_worker(client, settings, JobSheetWorkflowB, executor):
                during = await swap
                # The docs' step 4: the runs started before the upgrade are still open.
                await listed(client, env, upgraded_at, {waiting.uid, running.uid})
                sheets = {running.uid: await ended(env, running.uid)}
                await upload_and_trigger(env, waiting, data)
                await upload_and_trigger(env, during, data)
                # Submitted once the running job gave its contract back (the test service holds
                # three at most).
                fresh = await env.submit(env.request(data, "echo", service="test"))
                await upload_and_trigger(env, fresh, data)
                for job in (waiting, during, fresh):
                    sheets[job.uid] = await ended(env, job.uid)
                histories = {
                    uid: await client.get_workflow_handle(uid).fetch_history() for uid in sheets
                }
                await listed(client, env, upgraded_at, set())
            after = await env.balances()

    # Every job ends once, as it should: succeeded, its cost receipted and the rest refunded.
    for uid, sheet in sheets.items():
        assert sheet.state == JobState.SUCCEEDED, (uid, sheet.error)
        assert [e.state for e in sheet.timeline if e.state.terminal] == [JobState.SUCCEEDED]
        assert sheet.costs.charged > 0
        assert sheet.costs.charged + sheet.costs.refunded == sheet.costs.held
        assert sheet == await env.sheet(uid), "the persisted sheet is the workflow's result"
    # Money is conserved: what the payer paid, the provider got; nothing is left held.
    charged = sum(sheet.costs.charged for sheet in sheets.values())
    assert after[1] == 0 == before[1]
    assert after[0] == before[0] - charged and after[2] == before[2] + charged

    # The running job had passed the change on A: on B it stays on the old path (no marker, no
    # note), and the run's result reached it after the upgrade, so B settled it.
    assert patch_markers(histories[running.uid]) == []
    assert VERSION_B_NOTE not in [e.note for e in sheets[running.uid].timeline]
    assert run_completed_at(histories[running.uid]) > last_on_a[running.uid]
    # The waiting job reached the change after the upgrade: B's path, marked after A's last event.
    ((marked_at, patch),) = patch_markers(histories[waiting.uid])
    assert patch == UPGRADE_PATCH and marked_at > last_on_a[waiting.uid]
    # It and the jobs started on B took B's path, once.
    for uid in (waiting.uid, during.uid, fresh.uid):
        assert [p for _, p in patch_markers(histories[uid])] == [UPGRADE_PATCH]
        assert [e.note for e in sheets[uid].timeline].count(VERSION_B_NOTE) == 1

    # Every history replays against B: the Replayer test over recorded histories (the CI gate)
    # accepts the upgrade.
    replayer = Replayer(workflows=[JobSheetWorkflowB], data_converter=client.data_converter)
    for history in histories.values():
        await replayer.replay_workflow(history)
    # The same change without its patch breaks the job that passed it on A: the local activity
    # it adds meets the run's recorded steps.
    assert await replay_fails(client, UnpatchedJobSheetWorkflowB, histories[running.uid])
    # The old code cannot replay a run that took the new path: while the workers are rolled, a
    # task of such a run that reaches a worker not yet upgraded fails there and is retried
    # until an upgraded worker takes it (docs/workflow-upgrades.md, step 3).
    assert await replay_fails(client, JobSheetWorkflow, histories[fresh.uid])
