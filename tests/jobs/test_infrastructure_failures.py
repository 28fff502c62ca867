"""Infrastructure failures of a run: retried with backoff until the contract's deadline, and a
run that fails for good leaves nothing under the job's prefix, late writes included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import httpx
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.compute import ComputeActivities
from jobsheet.compute.config import load_compute_config
from jobsheet.compute.models import RUN_ACTIVITY, RunRequest, RunResult
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobState, job_prefix
from jobsheet.jobs.operations import trigger_run
from tests.jobs.conftest import Deployment, deployment
from workflows.compute_contract import ComputeContractWorkflow
from workflows.compute_service import ComputeServiceWorkflow

Run = Callable[[ComputeActivities, RunRequest], Awaitable[RunResult]]


@pytest.fixture
async def without_compute(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    """Jobs and ledger workers only (the test brings the compute); jobs that expire (so their
    upload PAR dies) 20 seconds after submission and write PUTs that live 20 seconds, so the
    job's last sweep comes soon after its end; the storage sweep runs every two seconds."""
    settings = job_settings.model_copy(
        update={"write_url_seconds": 20, "job_expiry_seconds": 20, "sweep_interval_seconds": 2}
    )
    async with deployment(client, settings, roles=("jobs", "ledger")) as env:
        yield env


@contextlib.asynccontextmanager
async def standard_compute(env: Deployment, run: Run) -> AsyncIterator[None]:
    """The "standard" compute service with its contract book and ``run`` as its run activity."""
    settings = env.settings
    queue = settings.compute_task_queue("standard")
    compute = ComputeActivities(
        client=env.client,
        config=load_compute_config(settings.calculations_file),
        service="standard",
        task_queue=queue,
    )

    @activity.defn(name=RUN_ACTIVITY)
    async def run_calculation(request: RunRequest) -> RunResult:
        return await run(compute, request)

    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ComputeServiceWorkflow, ComputeContractWorkflow],
        activities=[run_calculation],
    ):
        yield


async def submit_and_trigger(env: Deployment, data: bytes) -> str:
    submitted = await env.submit(env.request(data))
    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data)).status_code == 200
    await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
    return submitted.uid


def stored(env: Deployment, uid: str) -> list[str]:
    s3 = internal_client(env.settings)
    found = s3.list_objects(env.settings.bucket, prefix=job_prefix(uid), recursive=True)
    return [item.object_name for item in found if item.object_name]


async def until_empty(env: Deployment, uid: str, within: float) -> None:
    async def poll() -> None:
        while True:
            if not stored(env, uid):
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(poll(), within)


async def test_transient_failures_are_retried_until_the_run_succeeds(
    without_compute: Deployment,
) -> None:
    """Four infrastructure failures in a row (more than the old three attempts) and the paid
    job still succeeds, paying for its one real run."""
    env = without_compute
    attempts: list[int] = []

    async def flaky(compute: ComputeActivities, request: RunRequest) -> RunResult:
        attempts.append(activity.info().attempt)
        if len(attempts) <= 4:
            raise RuntimeError("the S3 server went away")
        return await compute.run_calculation(request)

    before = await env.balances()
    async with standard_compute(env, flaky):
        uid = await submit_and_trigger(env, b"retry me\n" * 10)
        sheet = await env.wait_for(uid, *[s for s in JobState if s.terminal], within=120)
    assert sheet.state == JobState.SUCCEEDED, sheet.error
    assert attempts == [1, 2, 3, 4, 5]
    assert sheet.costs.charged > 0
    assert sheet.costs.charged + sheet.costs.refunded == sheet.costs.held
    after = await env.balances()
    assert after == (before[0] - sheet.costs.charged, Decimal(0), before[2] + sheet.costs.charged)


async def test_a_run_that_fails_for_good_leaves_nothing_behind(without_compute: Deployment) -> None:
    """The compute writes part of its output, then fails for a reason no retry cures: the job
    fails free, ``jobs/<uid>/`` is emptied, a write granted earlier that lands after the end is
    swept too, and the bucket-write PAR grants nothing once the job left running."""
    env = without_compute
    grants: list[dict[str, str]] = []
    exchange_urls: list[str] = []

    async def broken(compute: ComputeActivities, request: RunRequest) -> RunResult:
        async with httpx.AsyncClient() as http:
            exchange_urls.append(request.output.url)
            grant = (await http.post(request.output.url, json={"key": "files/partial.bin"})).json()
            grants.append(grant)
            assert (await http.put(grant["url"], content=b"half" * 25_000)).status_code == 200
        raise ApplicationError("the worker's disk failed", type="DiskFailed", non_retryable=True)

    before = await env.balances()
    async with standard_compute(env, broken):
        uid = await submit_and_trigger(env, b"fail me\n")
        sheet = await env.wait_for(uid, *[s for s in JobState if s.terminal], within=60)
    assert sheet.state == JobState.FAILED
    assert sheet.error and "DiskFailed" in sheet.error
    assert sheet.outputs == [] and sheet.costs.charged == 0
    assert sheet.costs.refunded == sheet.costs.held
    assert await env.balances() == before
    assert grants and grants[0]["key"].startswith(f"jobs/{uid}/staging/")

    # Nothing is kept, so everything goes at once: the input and the partial output.
    await until_empty(env, uid, within=30)
    async with httpx.AsyncClient() as http:
        refused = await http.post(exchange_urls[0], json={"key": "files/late.bin"})
        assert refused.status_code == 410 and refused.json()["error"] == "JobNotRunning"
        # A PUT granted while the job ran still works until it expires (S3 cannot revoke it)...
        late = await http.put(grants[0]["url"], content=b"late" * 25_000)
        assert late.status_code == 200
    assert stored(env, uid) == [grants[0]["key"]]
    # ...and the storage sweep, once every such PUT has expired, deletes what it wrote.
    await until_empty(env, uid, within=90)
