"""SIGKILL the jobs worker mid-settlement and mid-compensation: the job still ends once, and
money is conserved to the last unit.

The jobs worker runs as a real ``worker.py --role jobs`` process. The ledger worker runs in
this process and is stopped while the crash happens, so the job is caught waiting on its
receipt (settlement) or its refund (compensation) when the jobs worker is killed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
from temporalio.client import Client

from jobsheet.core.settings import Settings
from jobsheet.identity import registry
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.identity.keys import generate_identity
from jobsheet.jobs.models import JobState
from jobsheet.jobs.operations import job_handle, submit_job, trigger_run
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.cheque import write_cheque
from jobsheet.ops.services import settings_env
from tests.jobs.conftest import Deployment
from tests.jobs.workers import LedgerWorker
from worker import compute_workers
from workflows.job_sheet import JobSheetWorkflow

ROOT = Path(__file__).resolve().parents[2]


class JobsWorkerProcess:
    """``worker.py --role jobs`` for the test's settings, killable and restartable."""

    def __init__(self, settings: Settings) -> None:
        self.env = settings_env(settings)
        self.proc: subprocess.Popen[str] | None = None

    def _spawn(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py"), "--role", "jobs"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def start(self) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        assert line.startswith("worker ready"), line

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@contextlib.asynccontextmanager
async def crashable(
    client: Client, settings: Settings
) -> AsyncIterator[tuple[Deployment, JobsWorkerProcess, LedgerWorker]]:
    operator = generate_identity(f"operator-{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(
        update={
            "provider_account": f"provider-{uuid.uuid4().hex[:8]}",
            "operator_user": operator.name,
        }
    )
    user = generate_identity(f"alice-{uuid.uuid4().hex[:8]}")
    jobs = JobsWorkerProcess(settings)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
        ledger_worker = LedgerWorker(client, settings, executor)
        ledger_worker.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                for worker in compute_workers(client, settings, executor, ["standard"]):
                    await stack.enter_async_context(worker)
                queue = settings.task_queue_ledger
                await registry.register_user(client, operator, task_queue=queue)
                await registry.register_user(client, user, task_queue=queue)
                await ledger.open_account(
                    client, owner=operator.name, task_queue=queue, account=settings.provider_account
                )
                payer = await ledger.open_account(client, owner=user.name, task_queue=queue)
                await ledger.deposit(client, payer, "50.00", operator=operator)
                await jobs.start()
                env = Deployment(
                    client,
                    settings,
                    user,
                    payer,
                    settings.provider_account,
                    Decimal("50.00"),
                    operator,
                )
                yield env, jobs, ledger_worker
        finally:
            jobs.stop()
            await ledger_worker.stop()


async def _submit(env: Deployment, data: bytes):
    request = env.request(data)
    resource = request.fingerprint()
    return await submit_job(
        env.client,
        env.settings,
        request=request,
        authorisation=sign_authorisation(env.user, resource),
        cheque=write_cheque(
            env.user, account=env.payer, recipient=env.provider, resource=resource, max_spend="9"
        ),
    )


async def _in_state(env: Deployment, uid: str, state: JobState) -> None:
    """Wait until the job's workflow says ``state`` (its ledger steps are local activities,
    which no describe lists: the state says which one it waits on)."""
    handle = job_handle(env.client, uid)
    while True:
        if (await handle.query(JobSheetWorkflow.get_sheet)).state == state:
            return
        await asyncio.sleep(0.2)


async def test_sigkill_mid_settlement(client: Client, job_settings: Settings) -> None:
    async with crashable(client, job_settings) as (env, jobs, ledger_worker):
        before = await env.total()
        data = b"settle me\n" * 50
        submitted = await _submit(env, data)
        async with httpx.AsyncClient() as http:
            await http.put(submitted.upload_url, content=data)
        await ledger_worker.stop()
        await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
        # Settling: the receipt waits on the stopped ledger.
        await asyncio.wait_for(_in_state(env, submitted.uid, JobState.SETTLING), 60)
        await asyncio.sleep(1)

        jobs.kill()
        await jobs.start()
        ledger_worker.start()
        sheet = await env.wait_for(submitted.uid, *[s for s in JobState if s.terminal])

        assert sheet.state == JobState.SUCCEEDED
        states = [entry.state for entry in sheet.timeline]
        assert states.count(JobState.SETTLING) == 1 and states.count(JobState.SUCCEEDED) == 1
        assert sheet.costs.charged > 0
        assert sheet.costs.charged + sheet.costs.refunded == sheet.costs.held
        charged = sheet.costs.charged
        assert await env.balances() == (env.initial_funds - charged, 0, charged)
        assert await env.total() == before


async def test_sigkill_mid_compensation(client: Client, job_settings: Settings) -> None:
    async with crashable(client, job_settings) as (env, jobs, ledger_worker):
        before = await env.total()
        submitted = await _submit(env, b"never run")
        assert (await ledger.balance(env.client, env.payer)).held > 0
        await ledger_worker.stop()
        await job_handle(env.client, submitted.uid).cancel()
        # Compensating: the refund waits on the stopped ledger (a local activity, retried).
        await asyncio.sleep(2)

        jobs.kill()
        await jobs.start()
        ledger_worker.start()
        sheet = await env.wait_for(submitted.uid, *[s for s in JobState if s.terminal])

        assert sheet.state == JobState.CANCELLED
        assert [entry.state for entry in sheet.timeline].count(JobState.CANCELLED) == 1
        assert sheet.costs.charged == 0 and sheet.costs.refunded == sheet.costs.held
        payer = await ledger.balance(env.client, env.payer)
        assert payer.balance == env.initial_funds and payer.held == 0
        assert await env.total() == before
