"""Benchmark: N whole jobs at once against a bare workflow doing one update and one activity.

Each job is submitted (update-with-start: verify, contract, cash, issue PARs), uploaded through
its PAR, triggered, run (the ``checksum`` calculation on a small input) and settled. The
baseline, measured in the same run on the same servers, is a bare workflow started with an
update-with-start that returns after one activity, then completes after a second update. It
prints completed jobs per second, submit-to-PARs latency (p50, p95) and history events per job,
each next to the baseline's figure and the ratio. Starts its own Temporal dev server, S3 server
and PAR gateway on free 127.0.0.1 ports.

What payload encryption costs: by default it runs twice, once with the product's converter
(every payload sealed with AES-256-GCM) and once with payloads in clear (the API too), each on
a fresh dev server, and prints the jobs' figures side by side (``--codec on`` or ``off`` runs one).

    .venv/bin/python -m bench.lifecycle [--jobs 20] [--codec both|on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from temporalio.client import Client, WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy
    from temporalio.worker import Worker

    from bench.servers import bench_servers
    from jobsheet.jobs.client import job_handle, trigger_run
    from jobsheet.jobs.models import JobState
    from jobsheet.settings import Settings
    from jobsheet.temporal import data_converter, exit_without_teardown
    from tests.api_server import start_api
    from tests.jobs.conftest import Deployment, deployment


@activity.defn
async def echo(value: str) -> str:
    return value


@workflow.defn(sandboxed=False)
class BareWorkflow:
    """The floor: one update that waits for one activity, then one update that ends it."""

    def __init__(self) -> None:
        self._result = ""
        self._done = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._done)
        return self._result

    @workflow.update
    async def submit(self, value: str) -> str:
        self._result = await workflow.execute_activity(
            echo, value, start_to_close_timeout=timedelta(seconds=30)
        )
        return self._result

    @workflow.update
    def finish(self) -> None:
        self._done = True


@dataclass
class Figures:
    per_second: float
    latencies: list[float]
    events: float

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _events(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


async def run_jobs(env: Deployment, count: int) -> Figures:
    latencies: list[float] = []

    async def one(n: int) -> str:
        data = f"job {n}\n".encode() * 100
        began = time.perf_counter()
        submitted = await env.submit(env.request(data))
        latencies.append(time.perf_counter() - began)
        async with httpx.AsyncClient() as http:
            await http.put(submitted.upload_url, content=data)
        await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
        sheet = await env.wait_for(submitted.uid, JobState.SUCCEEDED, within=600)
        assert sheet.state == JobState.SUCCEEDED
        return submitted.uid

    began = time.perf_counter()
    uids = await asyncio.gather(*(one(n) for n in range(count)))
    elapsed = time.perf_counter() - began
    # Jobs keep their outputs for the retention period: count events up to the settled end.
    events = [await _events(env.client, uid) for uid in uids]
    for uid in uids:
        await job_handle(env.client, uid).terminate("benchmark over")
    return Figures(count / elapsed, latencies, statistics.mean(events))


async def run_baseline(client: Client, count: int) -> Figures:
    task_queue = f"bare-{uuid.uuid4().hex[:8]}"
    latencies: list[float] = []
    async with Worker(client, task_queue=task_queue, workflows=[BareWorkflow], activities=[echo]):

        async def one(n: int) -> str:
            workflow_id = f"bare-{uuid.uuid4()}"
            began = time.perf_counter()
            await client.execute_update_with_start_workflow(
                BareWorkflow.submit,
                f"value {n}",
                start_workflow_operation=WithStartWorkflowOperation(
                    BareWorkflow.run,
                    id=workflow_id,
                    task_queue=task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                ),
            )
            latencies.append(time.perf_counter() - began)
            handle = client.get_workflow_handle(workflow_id)
            await handle.execute_update(BareWorkflow.finish)
            await handle.result()
            return workflow_id

        began = time.perf_counter()
        ids = await asyncio.gather(*(one(n) for n in range(count)))
        elapsed = time.perf_counter() - began
        events = [await _events(client, workflow_id) for workflow_id in ids]
    return Figures(count / elapsed, latencies, statistics.mean(events))


async def connect_in_clear(settings: Settings) -> Client:
    """The API's Temporal connection without payload encryption (the run in clear)."""
    config = settings.temporal_connect_config()
    return await Client.connect(data_converter=data_converter(None), **config)


async def measure(count: int, *, encrypted: bool) -> tuple[Figures, Figures]:
    """(jobs, baseline) on fresh servers, payloads sealed or in clear everywhere."""
    with tempfile.TemporaryDirectory() as tmp:
        async with bench_servers(
            Path(tmp),
            encrypted=encrypted,
            task_queue_jobs="bench-jobs",
            task_queue_ledger="bench-ledger",
            compute_task_queue_prefix="bench-compute-",
        ) as (env, settings):
            if encrypted:
                gateway = start_api(settings)
            else:
                gateway = start_api(settings, connector=connect_in_clear)
            try:
                baseline = await run_baseline(env.client, count)
                async with deployment(env.client, gateway.settings, funds="10000.00") as dep:
                    jobs = await run_jobs(dep, count)
            finally:
                gateway.stop()
    return jobs, baseline


def rows(figures: Figures) -> list[tuple[str, float]]:
    return [
        ("completed per second", figures.per_second),
        ("submit-to-PARs p50 (s)", figures.p(0.5)),
        ("submit-to-PARs p95 (s)", figures.p(0.95)),
        ("history events per job", figures.events),
    ]


def print_against_baseline(title: str, jobs: Figures, baseline: Figures) -> None:
    print(title)
    print(f"{'figure':32} {'jobs':>10} {'baseline':>10} {'ratio':>8}")
    for (name, value), (_, base) in zip(rows(jobs), rows(baseline), strict=True):
        print(f"{name:32} {value:10.3f} {base:10.3f} {value / base:8.2f}")


async def main(count: int, codec: str) -> None:
    measured: dict[str, tuple[Figures, Figures]] = {}
    for mode in ("on", "off"):
        if codec in (mode, "both"):
            measured[mode] = await measure(count, encrypted=mode == "on")
    for mode, (jobs, baseline) in measured.items():
        label = "payloads encrypted" if mode == "on" else "payloads in clear"
        print_against_baseline(
            f"{count} concurrent jobs (checksum) vs a bare update+activity workflow, same "
            f"servers, {label}",
            jobs,
            baseline,
        )
        print()
    if len(measured) == 2:
        on, off = measured["on"][0], measured["off"][0]
        print(f"{count} concurrent jobs: what encrypting every payload costs")
        print(f"{'figure':32} {'encrypted':>10} {'in clear':>10} {'ratio':>8}")
        for (name, value), (_, clear) in zip(rows(on), rows(off), strict=True):
            print(f"{name:32} {value:10.3f} {clear:10.3f} {value / clear:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument(
        "--codec",
        choices=("both", "on", "off"),
        default="both",
        help="run with payloads encrypted, in clear, or both (default) for the comparison",
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.jobs, arguments.codec))
    exit_without_teardown(0)
