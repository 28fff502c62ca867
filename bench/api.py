"""Benchmark: job submission and sheet reads through the public API, against a bare signed call.

The baseline is a signed request to a route mounted on the same API process for this benchmark
only: it verifies the signature like every ``/v1`` route, then does one update-with-start of a
bare workflow whose update returns at once (and a signed read that queries it). Both run on the
same Temporal dev server, S3 server and API process, started here on free 127.0.0.1 ports, one
request at a time. Prints p50/p95 of each, sheet reads per second, the ratios, and one line

    RESULT submit_p50_ratio=X submit_p95_ratio=X sheet_reads_per_s=X sheet_read_ratio=X

    .venv/bin/python -m bench.api [--jobs 30] [--reads-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import APIRouter, Request
from temporalio import workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.servers import bench_servers
from jobsheet.api.auth import Caller, SignedCaller
from jobsheet.api.context import context
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import exit_without_teardown
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.identity.http_signing import sign_request
from jobsheet.identity.keys import Identity
from jobsheet.ledger.cheque import write_cheque
from tests.api_server import start_api
from tests.jobs.conftest import Deployment, deployment

BARE_QUEUE = f"bench-bare-{uuid.uuid4().hex[:8]}"


@workflow.defn(sandboxed=False)
class BareWorkflow:
    """The floor: an update that returns at once, and a query."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    def submit(self, value: str) -> str:
        return value

    @workflow.query
    def read(self) -> str:
        return "bare"


def bare_router() -> APIRouter:
    """Signed routes that do the least a submit or a read can: the benchmark's baseline."""
    router = APIRouter()

    @router.post("/bench/bare/{name}")
    async def bare_submit(name: str, request: Request, caller: Caller = SignedCaller) -> dict:
        client = await context(request).client()
        value = await client.execute_update_with_start_workflow(
            BareWorkflow.submit,
            name,
            start_workflow_operation=WithStartWorkflowOperation(
                BareWorkflow.run,
                id=f"bare-{name}",
                task_queue=BARE_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            ),
        )
        return {"value": value}

    @router.get("/bench/bare/{name}")
    async def bare_read(name: str, request: Request, caller: Caller = SignedCaller) -> dict:
        client = await context(request).client()
        return {"value": await client.get_workflow_handle(f"bare-{name}").query(BareWorkflow.read)}

    return router


async def signed(
    http: httpx.AsyncClient, identity: Identity, method: str, url: str, body: object = None
) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if body is not None else {}
    request = http.build_request(method, url, content=content, headers=headers)
    sign_request(request, identity, content)
    response = await http.send(request)
    assert response.status_code < 300, response.text
    return response


def submission(env: Deployment, n: int) -> dict:
    request = env.request(f"bench job {n} {uuid.uuid4()}\n".encode())
    resource = request.fingerprint()
    return {
        "request": request.model_dump(mode="json"),
        "authorisation": sign_authorisation(env.user, resource).model_dump(mode="json"),
        "cheque": write_cheque(
            env.user,
            account=env.payer,
            recipient=env.settings.provider_account,
            resource=resource,
            max_spend="20.00",
        ).model_dump(mode="json"),
    }


async def timed(count: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    latencies = []
    for n in range(count):
        began = time.perf_counter()
        await call(n)
        latencies.append(time.perf_counter() - began)
    return latencies


async def reads_per_second(seconds: float, call: Callable[[], Awaitable[object]]) -> float:
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        await call()
        done += 1
    return done / (time.perf_counter() - began)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(client: Client, settings: Settings, jobs: int, read_seconds: float) -> None:
    server = start_api(settings, routers=[bare_router()])
    try:
        async with (
            Worker(client, task_queue=BARE_QUEUE, workflows=[BareWorkflow]),
            deployment(client, server.settings, funds="100000.00") as env,
            httpx.AsyncClient(timeout=120) as http,
        ):
            base = server.settings.api_url
            user = env.user
            # Warm both paths (connections, caches, workflow code) before measuring.
            await signed(http, user, "POST", f"{base}/bench/bare/warm-{uuid.uuid4().hex}")
            first = await signed(http, user, "POST", f"{base}/v1/jobs", submission(env, -1))
            uid = first.json()["uid"]

            async def submit(n: int) -> None:
                await signed(http, user, "POST", f"{base}/v1/jobs", submission(env, n))

            async def bare(n: int) -> None:
                await signed(http, user, "POST", f"{base}/bench/bare/{uuid.uuid4().hex}")

            bare_latencies = await timed(jobs, bare)
            job_latencies = await timed(jobs, submit)
            name = uuid.uuid4().hex
            await signed(http, user, "POST", f"{base}/bench/bare/{name}")
            bare_reads = await reads_per_second(
                read_seconds, lambda: signed(http, user, "GET", f"{base}/bench/bare/{name}")
            )
            sheet_reads = await reads_per_second(
                read_seconds, lambda: signed(http, user, "GET", f"{base}/v1/jobs/{uid}")
            )
    finally:
        server.stop()
    rows = [
        ("submit p50 (s)", quantile(job_latencies, 0.5), quantile(bare_latencies, 0.5)),
        ("submit p95 (s)", quantile(job_latencies, 0.95), quantile(bare_latencies, 0.95)),
        ("submit mean (s)", statistics.mean(job_latencies), statistics.mean(bare_latencies)),
        ("reads per second", sheet_reads, bare_reads),
    ]
    print(f"{jobs} submissions one at a time through the API vs a bare signed update-with-start")
    print(f"{'figure':24} {'jobsheet':>10} {'bare':>10} {'ratio':>8}")
    for label, value, floor in rows:
        print(f"{label:24} {value:10.4f} {floor:10.4f} {value / floor:8.2f}")
    print(
        f"RESULT submit_p50_ratio={rows[0][1] / rows[0][2]:.2f} "
        f"submit_p95_ratio={rows[1][1] / rows[1][2]:.2f} "
        f"sheet_reads_per_s={sheet_reads:.1f} sheet_read_ratio={sheet_reads / bare_reads:.2f}"
    )


async def main(jobs: int, read_seconds: float) -> None:
    suffix = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        async with bench_servers(
            Path(tmp),
            task_queue_jobs="bench-jobs",
            task_queue_ledger="bench-ledger",
            compute_task_queue_prefix="bench-compute-",
            operator_user=f"operator-{suffix}",
            provider_account=f"provider-{suffix}",
        ) as (env, settings):
            await measure(env.client, settings, jobs, read_seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--reads-seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.jobs, arguments.reads_seconds))
    exit_without_teardown(0)
