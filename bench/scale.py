"""Benchmark: many open jobs on one paying account and one compute service.

Starts its own Temporal dev server and S3 server on free 127.0.0.1 ports, and ``worker.py
--role all`` as a process of its own (``JOBSHEET_MAX_CACHED_WORKFLOWS`` as set, else the
default), then submits ``--jobs`` jobs from one account to one service (``scale`` in
bench/scale.toml, whose capacity is raised for it) and leaves them waiting for their upload:
each holds a credit note on the account and a contract on the service. It prints the worker's
resident memory after every 1,000 open jobs, and at the end the largest history event (an upper
bound on the largest payload) of the account's runs, the contract book's runs and a sample of
the jobs' and notes' workflows. The last line is
``RESULT open_jobs=N worker_rss_mb=X largest_payload_kb=X``.

    .venv/bin/python -m bench.scale [--jobs 10000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from temporalio.client import Client

from bench.servers import bench_servers
from jobsheet.compute.book import contract_book_id
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import exit_without_teardown
from jobsheet.identity import registry
from jobsheet.identity.keys import generate_identity, save_identity
from jobsheet.jobs.models import JobState
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import account_workflow_id, credit_note_workflow_id
from jobsheet.ops.services import settings_env
from tests.jobs.conftest import Deployment

ROOT = Path(__file__).resolve().parent.parent
CALCULATIONS_FILE = Path(__file__).with_name("scale.toml")
SERVICE = "scale"
CALCULATION = "noop"
REPORT_EVERY = 1000
KEPT_LOG = Path(tempfile.gettempdir()) / "bench-scale-worker.log"
"""Where the worker's output is left after the run, for a look when something went wrong."""
SAMPLE = 20


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """worker.py --role all with the settings' environment, its output in ``log`` (a pipe
    nobody reads would fill and stop the worker)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py"), "--role", "all"],
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if b"worker ready" in log.read_bytes():
            return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the worker did not start: {log.read_text(errors='replace')[-2000:]}")


async def largest_event_kb(client: Client, workflow_id: str, *, every_run: bool) -> float:
    """The largest event (bytes, as stored) in the workflow's latest run, or in every run back
    through continue-as-new."""
    largest, run_id = 0, None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        largest = max([largest, *(event.ByteSize() for event in history.events)])
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id
        if not every_run or not run_id:
            return largest / 1024


async def submit_all(
    dep: Deployment, worker: subprocess.Popen[bytes], jobs: int, concurrency: int
) -> list[str]:
    limit = asyncio.Semaphore(concurrency)
    done = 0
    began = time.perf_counter()
    uids: list[str] = []

    async def one(index: int) -> None:
        nonlocal done
        data = f"scale job {index} {uuid.uuid4()}\n".encode()
        async with limit:
            submitted = await dep.submit(
                dep.request(data, CALCULATION, service=SERVICE), max_spend="1.00"
            )
        uids.append(submitted.uid)
        done += 1
        if done % REPORT_EVERY == 0:
            rate = done / (time.perf_counter() - began)
            print(
                f"{done:6d} open jobs  worker RSS {rss_mb(worker.pid):7.1f} MB  "
                f"({rate:.1f} submissions/s)",
                flush=True,
            )

    await asyncio.gather(*(one(i) for i in range(jobs)))
    return uids


async def main(jobs: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        operator = generate_identity(f"operator-{uuid.uuid4().hex[:8]}")
        async with bench_servers(
            root,
            operator_user=operator.name,
            provider_account=f"provider-{uuid.uuid4().hex[:8]}",
            calculations_file=CALCULATIONS_FILE,
            bucket="bench-scale",
        ) as (env, settings):
            save_identity(operator, config_dir=settings.state_dir)
            worker = start_worker(settings, root / "worker.log")
            try:
                client, queue = env.client, settings.task_queue_ledger
                user = generate_identity(f"alice-{uuid.uuid4().hex[:8]}")
                await registry.register_user(client, operator, task_queue=queue)
                await registry.register_user(client, user, task_queue=queue)
                provider = await ledger.open_account(
                    client, owner=operator.name, task_queue=queue, account=settings.provider_account
                )
                payer = await ledger.open_account(client, owner=user.name, task_queue=queue)
                funds = Decimal(jobs) * 2
                await ledger.deposit(client, payer, funds, operator=operator)
                dep = Deployment(client, settings, user, payer, provider, funds, operator)
                print(f"worker RSS at start {rss_mb(worker.pid):.1f} MB", flush=True)
                uids = await submit_all(dep, worker, jobs, concurrency)
                view = await ledger.balance(client, payer)
                sample = uids[:: max(1, len(uids) // SAMPLE)]
                states = {(await dep.sheet(uid)).state for uid in sample}
                if states != {JobState.AWAITING_UPLOAD} or view.open_holds != jobs:
                    raise RuntimeError(
                        f"expected {jobs} jobs awaiting upload, each holding a note; found "
                        f"states {sorted(states)} and {view.open_holds} open holds"
                    )
                await asyncio.sleep(2)
                rss = rss_mb(worker.pid)
                largest = {
                    "account": await largest_event_kb(
                        client, account_workflow_id(payer), every_run=True
                    ),
                    "contract book": await largest_event_kb(
                        client,
                        contract_book_id(settings.compute_task_queue(SERVICE)),
                        every_run=True,
                    ),
                }
                for uid in sample:
                    sheet = await dep.sheet(uid)
                    largest["job"] = max(
                        largest.get("job", 0.0),
                        await largest_event_kb(client, uid, every_run=False),
                    )
                    for note in sheet.credit_notes:
                        largest["credit note"] = max(
                            largest.get("credit note", 0.0),
                            await largest_event_kb(
                                client,
                                credit_note_workflow_id(note.uid, note.account),
                                every_run=False,
                            ),
                        )
            finally:
                shutil.copy(root / "worker.log", KEPT_LOG)
                worker.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(30)
                if worker.poll() is None:
                    worker.kill()
    print(f"{jobs} open jobs: {view.held} held on one account in {view.open_holds} notes")
    for name, kb in largest.items():
        print(f"largest event in {name} histories: {kb:.1f} KB")
    print(
        f"RESULT open_jobs={jobs} worker_rss_mb={rss:.0f} "
        f"largest_payload_kb={max(largest.values()):.1f}"
    )


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    code = 0
    try:
        asyncio.run(main(args.jobs, args.concurrency))
    except Exception as exc:
        print(f"benchmark failed: {exc!r}", file=sys.stderr)
        code = 1
    exit_without_teardown(code)


if __name__ == "__main__":
    cli()
