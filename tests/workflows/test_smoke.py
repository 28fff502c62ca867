"""Workflow round trips on the dev server and durable timers on the time-skipping server."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.smoke import SmokeActivities
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from workflows.smoke import SmokeInput, SmokeWorkflow


async def test_smoke_workflow_round_trip_on_dev_server(
    client: Client, settings: Settings, task_queue: str
) -> None:
    activities = SmokeActivities(internal_client(settings))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[SmokeWorkflow],
            activities=[activities.write_and_read_object],
            activity_executor=executor,
        ):
            workflow_id = f"smoke-{uuid.uuid4()}"
            result = await client.execute_workflow(
                SmokeWorkflow.run,
                SmokeInput(bucket=settings.bucket, message="round trip"),
                id=workflow_id,
                task_queue=task_queue,
            )
    assert result.read_back == "round trip"
    assert result.key == f"smoke/{workflow_id}.txt"


@workflow.defn(sandboxed=False)
class WaitAnHourWorkflow:
    """Waits for a condition that never comes, with a one-hour timeout."""

    @workflow.run
    async def run(self) -> float:
        began = workflow.now()
        try:
            await workflow.wait_condition(lambda: False, timeout=timedelta(hours=1))
        except TimeoutError:
            pass
        return (workflow.now() - began).total_seconds()


async def test_one_hour_wait_condition_skips_time(time_env: WorkflowEnvironment) -> None:
    task_queue = f"tq-{uuid.uuid4().hex}"
    async with Worker(time_env.client, task_queue=task_queue, workflows=[WaitAnHourWorkflow]):
        began = time.monotonic()
        waited = await time_env.client.execute_workflow(
            WaitAnHourWorkflow.run, id=f"wait-{uuid.uuid4()}", task_queue=task_queue
        )
        wall = time.monotonic() - began
    assert waited >= 3600
    # Not a speed check: an hour of workflow time in under a minute proves time was skipped.
    print(f"one hour of workflow time took {wall:.3f}s of wall time")
    assert wall < 60
