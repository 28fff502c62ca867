"""Benchmark: whole jobs, one at a time and N at once, against a bare update+activity workflow.

A job is submitted (update-with-start: verify, contract, cash, issue PARs), uploaded through its
PAR, triggered, run and settled; it runs ``noop`` (``true``) from bench/calculations.toml on a
one-line input, on a service with a run slot for every job, so the figures are the pipeline's.
The baseline, on the same servers in the same run, is a bare workflow: update-with-start
returning after one activity, then a second update that ends it. Phase one runs ``--sequential``
of each strictly one after another, after one uncounted warm-up (submit-to-PARs p50, p95); phase
two ``--jobs`` at once (completed/s, submit-to-PARs p50, p95, history events per job workflow, and
events per job across every workflow in the namespace, sweeps included: the change in summed
history lengths from just before the jobs to after the ledger settled). Starts its own Temporal
dev server, S3 server and PAR gateway on free 127.0.0.1 ports.

``--codec on`` (default) seals payloads with the product's converter, ``off`` runs in clear (the
API too), ``both`` runs each on fresh servers and compares them. The last line, ``RESULT ...``,
holds phase two's figures (the encrypted run's when it ran).

    .venv/bin/python -m bench.lifecycle [--jobs 20] [--sequential 10] [--codec on|off|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
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
    from jobsheet.core.settings import Settings
    from jobsheet.core.temporal import data_converter, exit_without_teardown
    from jobsheet.jobs.models import TERMINAL_STATES, JobState
    from jobsheet.jobs.operations import trigger_run
    from tests.api_server import start_api
    from tests.jobs.conftest import Deployment, deployment

CALCULATION = "noop"
SERVICE = "bench"
CALCULATIONS_FILE = Path(__file__).with_name("calculations.toml")
BARE_PREFIX = "bare-"


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
    """One side's figures: the one-at-a-time submit latencies, then the concurrent phase's."""

    sequential: list[float]
    concurrent: list[float]
    per_second: float
    events: float
    events_all: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


RunOne = Callable[[int, list[float]], Awaitable[str]]


async def one_at_a_time(one: RunOne, count: int) -> list[float]:
    """Submit latencies of ``count`` runs, each after the last ended (after one uncounted)."""
    await one(-1, [])
    latencies: list[float] = []
    for n in range(count):
        await one(n, latencies)
    return latencies


async def all_at_once(one: RunOne, count: int) -> tuple[list[float], float, list[str]]:
    """(submit latencies, completed per second, workflow ids) of ``count`` runs at once."""
    latencies: list[float] = []
    began = time.perf_counter()
    ids = await asyncio.gather(*(one(n, latencies) for n in range(count)))
    return latencies, count / (time.perf_counter() - began), list(ids)


async def history_length(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


async def run_baseline(client: Client, *, sequential: int, concurrent: int) -> Figures:
    task_queue = f"{BARE_PREFIX}{uuid.uuid4().hex[:8]}"

    async def one(n: int, latencies: list[float]) -> str:
        workflow_id = f"{BARE_PREFIX}{uuid.uuid4()}"
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

    async with Worker(client, task_queue=task_queue, workflows=[BareWorkflow], activities=[echo]):
        alone = await one_at_a_time(one, sequential)
        together, per_second, ids = await all_at_once(one, concurrent)
        events = statistics.mean([await history_length(client, i) for i in ids])
    # The bare workflow is the only workflow its "job" touches.
    return Figures(alone, together, per_second, events, events)


async def run_job(dep: Deployment, latencies: list[float], http: httpx.AsyncClient) -> str:
    """Submit, upload (with the user's one ``http`` client), trigger and wait for the end of one
    job; its submit latency is appended."""
    data = f"job {uuid.uuid4()}\n".encode()
    began = time.perf_counter()
    submitted = await dep.submit(dep.request(data, CALCULATION, service=SERVICE))
    latencies.append(time.perf_counter() - began)
    (await http.put(submitted.upload_url, content=data)).raise_for_status()
    await trigger_run(dep.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
    sheet = await dep.wait_for(submitted.uid, *TERMINAL_STATES, within=600)
    if sheet.state != JobState.SUCCEEDED:
        raise RuntimeError(f"job {submitted.uid} ended {sheet.state.value}, not succeeded")
    return submitted.uid


async def settle(dep: Deployment, *, quiet: float = 2.0, within: float = 300) -> None:
    """Wait until the payer holds nothing and the provider's balance has not moved for ``quiet``."""
    deadline = time.monotonic() + within
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        _, held, provider = await dep.balances()
        if held != 0 or provider != last:
            last, since = provider, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the ledger did not settle within {within} s")


async def namespace_events(client: Client, *, must_include: frozenset[str] = frozenset()) -> int:
    """Summed history length of every execution (each run, open or closed) but the bare ones,
    once the (lagging) listing shows every id in ``must_include``."""
    for _ in range(50):
        executions = [
            (e.id, e.run_id)
            async for e in client.list_workflows()
            if not e.id.startswith(BARE_PREFIX)
        ]
        if must_include <= {workflow_id for workflow_id, _ in executions}:
            break
        await asyncio.sleep(0.2)
    else:
        raise TimeoutError("the workflow listing never showed every job")

    async def length(workflow_id: str, run_id: str | None) -> int:
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        return description.raw_description.workflow_execution_info.history_length

    return sum(await asyncio.gather(*(length(i, r) for i, r in executions)))


async def end_leftovers(client: Client, uids: list[str]) -> None:
    """Terminate job workflows that outlived their job, ignoring whatever goes wrong."""
    for uid in uids:
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(uid).terminate("benchmark over")


async def run_jobs(dep: Deployment, *, sequential: int, concurrent: int) -> Figures:
    async with httpx.AsyncClient() as http:

        async def one(_: int, latencies: list[float]) -> str:
            return await run_job(dep, latencies, http)

        alone = await one_at_a_time(one, sequential)
        await settle(dep)
        before = await namespace_events(dep.client, must_include=frozenset(dep.submitted))
        together, per_second, uids = await all_at_once(one, concurrent)
    await settle(dep)
    after = await namespace_events(dep.client, must_include=frozenset(dep.submitted))
    events = statistics.mean([await history_length(dep.client, uid) for uid in uids])
    await end_leftovers(dep.client, dep.submitted)
    return Figures(alone, together, per_second, events, (after - before) / concurrent)


async def connect_in_clear(settings: Settings) -> Client:
    """The API's Temporal connection without payload encryption (the run in clear)."""
    config = settings.temporal_connect_config()
    return await Client.connect(data_converter=data_converter(None), **config)


async def measure(*, sequential: int, concurrent: int, encrypted: bool) -> tuple[Figures, Figures]:
    """(jobs, baseline) on fresh servers, payloads sealed or in clear everywhere."""
    with tempfile.TemporaryDirectory() as tmp:
        async with bench_servers(
            Path(tmp),
            encrypted=encrypted,
            task_queue_jobs="bench-jobs",
            task_queue_ledger="bench-ledger",
            compute_task_queue_prefix="bench-compute-",
            calculations_file=CALCULATIONS_FILE,
        ) as (env, settings):
            if encrypted:
                gateway = start_api(settings)
            else:
                gateway = start_api(settings, connector=connect_in_clear)
            try:
                baseline = await run_baseline(
                    env.client, sequential=sequential, concurrent=concurrent
                )
                async with deployment(env.client, gateway.settings, funds="10000.00") as dep:
                    jobs = await run_jobs(dep, sequential=sequential, concurrent=concurrent)
            finally:
                gateway.stop()
    return jobs, baseline


Rows = list[tuple[str, float]]


def rows(f: Figures) -> tuple[Rows, Rows]:
    """The one-at-a-time phase's figures, then the concurrent phase's."""
    sequential = [
        ("submit-to-PARs p50 (s)", percentile(f.sequential, 0.5)),
        ("submit-to-PARs p95 (s)", percentile(f.sequential, 0.95)),
    ]
    concurrent = [
        ("completed per second", f.per_second),
        ("submit-to-PARs p50 (s)", percentile(f.concurrent, 0.5)),
        ("submit-to-PARs p95 (s)", percentile(f.concurrent, 0.95)),
        ("history events per job", f.events),
        ("events, all workflows, per job", f.events_all),
    ]
    return sequential, concurrent


def ratios(left: Rows, right: Rows) -> list[float]:
    return [value / other for (_, value), (_, other) in zip(left, right, strict=True)]


def print_tables(
    title: str, columns: str, left: Figures, right: Figures, phases: tuple[str, str]
) -> None:
    """Both phases' figures, ``left`` next to ``right`` and their ratio."""
    print(title)
    for phase, mine, theirs in zip(phases, rows(left), rows(right), strict=True):
        print(f"{phase:32} {columns} {'ratio':>8}")
        for (name, value), (_, other) in zip(mine, theirs, strict=True):
            print(f"{name:32} {value:10.3f} {other:10.3f} {value / other:8.2f}")
    print()


def number(value: float) -> str:
    """A count as a count (``43``), a mean to two places without trailing zeros (``81.55``)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def report(measured: dict[str, tuple[Figures, Figures]], sequential: int, concurrent: int) -> None:
    what = f"{CALCULATION} ({CALCULATIONS_FILE.parent.name}/{CALCULATIONS_FILE.name}, 1-line input)"
    phases = (f"one at a time ({sequential} jobs)", f"{concurrent} jobs at once")
    for mode, (jobs, baseline) in measured.items():
        label = "payloads encrypted" if mode == "on" else "payloads in clear"
        title = f"Jobs running {what} vs a bare update+activity workflow, same servers, {label}"
        print_tables(title, f"{'jobs':>10} {'baseline':>10}", jobs, baseline, phases)
    if len(measured) == 2:
        title = f"Jobs running {what}: what encrypting every payload costs"
        columns = f"{'encrypted':>10} {'in clear':>10}"
        print_tables(title, columns, measured["on"][0], measured["off"][0], phases)
    jobs, baseline = measured["on" if "on" in measured else "off"]
    (alone, alone_base), (together, together_base) = zip(rows(jobs), rows(baseline), strict=True)
    p50, p95 = ratios(alone, alone_base)
    print(f"one at a time: submit_p50_ratio={p50:.2f} submit_p95_ratio={p95:.2f}")
    per_second, p50, p95, _, _ = ratios(together, together_base)
    print(
        f"RESULT events_per_job={number(jobs.events)} "
        f"events_all_workflows_per_job={number(jobs.events_all)} submit_p50_ratio={p50:.2f} "
        f"submit_p95_ratio={p95:.2f} jobs_per_s_ratio={per_second:.2f}"
    )


async def main(*, sequential: int, concurrent: int, codec: str) -> None:
    measured: dict[str, tuple[Figures, Figures]] = {}
    for mode in ("on", "off"):
        if codec in (mode, "both"):
            measured[mode] = await measure(
                sequential=sequential, concurrent=concurrent, encrypted=mode == "on"
            )
    report(measured, sequential, concurrent)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs at once (20)")
    parser.add_argument("--sequential", type=int, default=10, help="one after another (10)")
    parser.add_argument("--codec", choices=("on", "off", "both"), default="on")
    args = parser.parse_args()
    asyncio.run(main(sequential=args.sequential, concurrent=args.jobs, codec=args.codec))
    exit_without_teardown(0)
