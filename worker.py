"""The jobsheet worker: serves one role or all of them, and stops gracefully on SIGINT/SIGTERM.

Roles map to task queues so that each can be scaled on its own machines:

- ``jobs``: job sheet workflows and their storage activities (``JOBSHEET_TASK_QUEUE_JOBS``);
- ``ledger``: account workflows and ledger activities (``JOBSHEET_TASK_QUEUE_LEDGER``);
- ``compute``: one compute service's run activities (``--service NAME``);
- ``all``: everything above in one process, for the local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings, load_settings
from jobsheet.core.temporal import connect, exit_without_teardown
from jobsheet.telemetry.job_states import watch_job_states
from jobsheet.telemetry.logs import RefusalLog, configure_logging
from jobsheet.telemetry.metrics import start_metrics_endpoint
from jobsheet.telemetry.tracing import start_tracing, stop_tracing

ROLES = ("jobs", "ledger", "compute", "all")
GRACEFUL_SHUTDOWN = timedelta(seconds=30)

log = logging.getLogger("jobsheet.worker")


def jobs_workers(
    client: Client, settings: Settings, executor: concurrent.futures.Executor
) -> list[Worker]:
    """Workers for the job sheet task queue: job sheet workflows with their steps (local
    activities) and storage activities, and the storage sweep."""
    from activities.jobs import JobActivities
    from activities.smoke import SmokeActivities
    from activities.storage import StorageActivities
    from activities.sweep import SweepActivities
    from workflows.job_sheet import JobSheetWorkflow
    from workflows.smoke import SmokeWorkflow
    from workflows.storage_sweep import StorageSweepWorkflow

    smoke = SmokeActivities(internal_client(settings))
    storage = StorageActivities(settings)
    steps = JobActivities(client, settings)
    sweep = SweepActivities(settings)
    return [
        Worker(
            client,
            task_queue=settings.task_queue_jobs,
            workflows=[JobSheetWorkflow, StorageSweepWorkflow, SmokeWorkflow],
            activities=[
                *storage.all(),
                *steps.all(),
                sweep.sweep_storage,
                smoke.write_and_read_object,
            ],
            activity_executor=executor,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            max_cached_workflows=settings.max_cached_workflows,
            interceptors=[RefusalLog()],
        )
    ]


def ledger_workers(
    client: Client, settings: Settings, executor: concurrent.futures.Executor
) -> list[Worker]:
    """Workers for the ledger task queue (accounts and payments)."""
    from activities.ledger import LedgerActivities
    from jobsheet.identity.trust import trusted_operator_keys
    from workflows.account import AccountWorkflow
    from workflows.credit_note import CreditNoteWorkflow
    from workflows.user import UserWorkflow

    ledger = LedgerActivities(client, settings, internal_client(settings))
    if trusted_operator_keys(settings) is None:
        log.warning(
            "no operator key configured (JOBSHEET_OPERATOR_PUBLIC_KEYS): deposits are checked "
            "against the user registry's keys for %s, which whoever reaches Temporal can change",
            settings.operator_user,
        )
    return [
        Worker(
            client,
            task_queue=settings.task_queue_ledger,
            workflows=[AccountWorkflow, CreditNoteWorkflow, UserWorkflow],
            activities=ledger.all(),
            activity_executor=executor,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            max_cached_workflows=settings.max_cached_workflows,
            interceptors=[RefusalLog()],
        )
    ]


def compute_workers(
    client: Client,
    settings: Settings,
    executor: concurrent.futures.Executor,
    services: Sequence[str],
) -> list[Worker]:
    """One worker per compute service named, each on that service's task queue.

    First the process prepares its sandbox (jobsheet/compute/sandbox.py): it makes itself
    non-dumpable, removes the run directories SIGKILLed workers left, and chooses the user
    calculations run as (``JOBSHEET_COMPUTE_RUN_AS_USER``) and the cgroups that limit them.
    """
    from activities.compute import ComputeActivities
    from jobsheet.compute.config import load_compute_config
    from jobsheet.compute.sandbox import prepare_sandbox
    from workflows.compute_contract import ComputeContractWorkflow
    from workflows.compute_service import ComputeServiceWorkflow

    config = load_compute_config(settings.calculations_file)
    sandbox = prepare_sandbox(settings.compute_run_as_user)
    workers = []
    for name in services or sorted(config.services):
        task_queue = settings.compute_task_queue(name)
        compute = ComputeActivities(
            client=client, config=config, service=name, task_queue=task_queue, sandbox=sandbox
        )
        workers.append(
            Worker(
                client,
                task_queue=task_queue,
                workflows=[ComputeServiceWorkflow, ComputeContractWorkflow],
                activities=[compute.run_calculation],
                # Runs are bounded inside by the service's max_concurrent_runs; the extra slots
                # let a run waiting for a run slot heartbeat instead of waiting for a task slot.
                max_concurrent_activities=compute.max_concurrent_activities,
                activity_executor=executor,
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                max_cached_workflows=settings.max_cached_workflows,
                interceptors=[RefusalLog()],
            )
        )
    return workers


def build_workers(
    client: Client,
    settings: Settings,
    *,
    role: str,
    services: Sequence[str] = (),
    executor: concurrent.futures.Executor,
) -> list[Worker]:
    """Every worker the role needs."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    workers: list[Worker] = []
    if role in ("jobs", "all"):
        workers += jobs_workers(client, settings, executor)
    if role in ("ledger", "all"):
        workers += ledger_workers(client, settings, executor)
    if role in ("compute", "all"):
        workers += compute_workers(client, settings, executor, services)
    return workers


async def run_until_stopped(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    """Run the workers until ``stop`` is set or one fails, then shut all down gracefully."""
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    log.info("shutting down; in-flight activities get %s", GRACEFUL_SHUTDOWN)
    await asyncio.gather(*(worker.shutdown() for worker in workers), return_exceptions=True)
    stopper.cancel()
    for task in tasks:
        if task in done and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def serve(role: str, services: Sequence[str], settings: Settings) -> None:
    start_metrics_endpoint(settings, process=f"worker-{role}")
    start_tracing(settings, service_name=f"jobsheet-worker-{role}")
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as executor:
        workers = build_workers(client, settings, role=role, services=services, executor=executor)
        if not workers:
            raise SystemExit(f"role {role!r} has nothing to run")
        if role in ("jobs", "all"):
            from jobsheet.jobs.sweep_schedule import ensure_sweep_schedule

            await ensure_sweep_schedule(client, settings)
            watch_job_states(client, settings)  # jobsheet_jobs{state} on the metrics endpoint
        queues = sorted({worker.task_queue for worker in workers})
        print(
            f"worker ready: role={role} task_queues={','.join(queues)} "
            f"temporal={settings.temporal_target}",
            flush=True,
        )
        await run_until_stopped(workers, stop)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run jobsheet workers.")
    parser.add_argument("--role", choices=ROLES, default="all")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        help="compute service to serve (repeatable); default: every configured service",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    code = 0
    try:
        settings = load_settings()
        configure_logging(settings)
        asyncio.run(serve(args.role, args.service, settings))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            code = 2
        else:
            code = int(exc.code or 0)
    except Exception as exc:
        print(f"worker failed: {exc}", file=sys.stderr)
        code = 1
    stop_tracing()  # os._exit skips atexit: flush the last spans first
    exit_without_teardown(code)


if __name__ == "__main__":
    main()
