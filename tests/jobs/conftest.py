"""A whole jobsheet deployment for one test: every worker role, the PAR gateway and the ledger."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.core.objectstore import presign_client
from jobsheet.core.settings import Settings
from jobsheet.identity import registry
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.identity.keys import Identity, generate_identity, save_identity
from jobsheet.jobs.messages import DownloadPars, SubmitResult
from jobsheet.jobs.models import JobRequest, JobSheet, JobState, job_uid_for
from jobsheet.jobs.operations import load_sheet, submit_job
from jobsheet.jobs.sweep_schedule import ensure_sweep_schedule, sweep_schedule_id
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.cheque import write_cheque
from jobsheet.pars.downloads import presign_downloads
from tests.histories import in_clear
from worker import build_workers

RECORD_ENV = "JOBSHEET_RECORD_HISTORIES"
HISTORIES = Path(__file__).with_name("histories")


async def record_histories(client: Client, uids: list[str]) -> None:
    """Save the histories of these jobs for the Replayer test (JOBSHEET_RECORD_HISTORIES=1).

    Any other value than ``1`` names a series: ``JOBSHEET_RECORD_HISTORIES=v2`` writes
    ``<test>-v2-<n>.json``, so fresh histories land beside the old ones, which keep replaying.
    """
    HISTORIES.mkdir(exist_ok=True)
    test = os.environ.get("PYTEST_CURRENT_TEST", "test").split("::")[-1].split(" ")[0]
    test = test.replace("[", "-").replace("]", "")  # a parametrised test: name-<id>
    series = os.environ.get(RECORD_ENV, "1")
    stem = test if series == "1" else f"{test}-{series}"
    for n, uid in enumerate(uids):
        try:
            history = await client.get_workflow_handle(uid).fetch_history()
        except Exception:
            continue
        (HISTORIES / f"{stem}-{n}.json").write_text(in_clear(history, client).to_json())


@dataclass
class Deployment:
    """What a job test uses: the client, the settings, a user, the payer and provider accounts,
    and the operator whose key signs deposits."""

    client: Client
    settings: Settings
    user: Identity
    payer: str
    provider: str
    initial_funds: Decimal
    operator: Identity
    submitted: list[str] = field(default_factory=list)

    def request(
        self,
        data: bytes,
        calculation: str = "checksum",
        *,
        service: str = "standard",
        **parameters: object,
    ) -> JobRequest:
        return JobRequest(
            calculation=calculation,
            service=service,
            parameters=dict(parameters),
            input_size=len(data),
            input_sha256=hashlib.sha256(data).hexdigest(),
            account=self.payer,
            user=self.user.name,
        )

    async def submit(self, request: JobRequest, *, max_spend: str = "20.00") -> SubmitResult:
        resource = request.fingerprint()
        authorisation = sign_authorisation(self.user, resource)
        self.submitted.append(job_uid_for(authorisation.signature))
        return await submit_job(
            self.client,
            self.settings,
            request=request,
            authorisation=authorisation,
            cheque=write_cheque(
                self.user,
                account=self.payer,
                recipient=self.provider,
                resource=resource,
                max_spend=max_spend,
            ),
        )

    async def downloads(self, uid: str) -> DownloadPars:
        """Download PARs for an ended job's outputs, as the API presigns them."""
        sheet = await self.sheet(uid)
        signer = presign_client(self.settings)
        return presign_downloads(
            signer, self.settings.bucket, sheet, max_seconds=self.settings.download_par_seconds
        )

    async def sheet(self, uid: str) -> JobSheet:
        return await load_sheet(self.client, self.settings, uid)

    async def wait_for(self, uid: str, *states: JobState, within: float = 90) -> JobSheet:
        async def poll() -> JobSheet:
            while True:
                sheet = await self.sheet(uid)
                if sheet.state in states:
                    return sheet
                await asyncio.sleep(0.2)

        return await asyncio.wait_for(poll(), within)

    async def balances(self) -> tuple[Decimal, Decimal, Decimal]:
        """(payer balance, payer held, provider balance), once no money is on its way from the
        payer to the provider.

        Two reads of two accounts are no snapshot: a credit the provider has applied stays in the
        payer's ``in_flight`` until the payer hears it was delivered, so reads taken mid-transfer
        can count it twice or not at all (a total of 100.06 for 100.00 was seen once in CI)."""
        async with asyncio.timeout(30):
            while True:
                payer = await ledger.balance(self.client, self.payer)
                if not payer.in_flight:
                    break
                await asyncio.sleep(0.2)
        provider = await ledger.balance(self.client, self.provider)
        return payer.balance, payer.held, provider.balance

    async def total(self) -> Decimal:
        """All the payer's and the provider's money (the provider holds none): conserved by every job."""
        return sum(await self.balances(), Decimal(0))


@contextlib.asynccontextmanager
async def deployment(
    client: Client,
    settings: Settings,
    *,
    funds: str = "100.00",
    roles: Sequence[str] = ("all",),
) -> AsyncIterator[Deployment]:
    """Run the worker roles in-process (every one by default; a test that brings its own
    compute worker names ``("jobs", "ledger")``), with a registered user and funded accounts."""
    # The settings name the operator (whose key signs deposits) and the provider account: both
    # are the operator's policy, shared by the workers and the API. The test fixtures give
    # each test its own (tests/conftest.py, queued_settings); other callers get fresh ones.
    if settings.operator_user == "operator":
        settings = settings.model_copy(
            update={
                "provider_account": f"provider-{uuid.uuid4().hex[:8]}",
                "operator_user": f"operator-{uuid.uuid4().hex[:8]}",
            }
        )
    operator = generate_identity(settings.operator_user)
    # As on the local stack: the operator's key file in the state dir is the ledger workers'
    # trust anchor for deposits (jobsheet/identity/trust.py).
    save_identity(operator, config_dir=settings.state_dir)
    user = generate_identity(f"alice-{uuid.uuid4().hex[:8]}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        workers = [
            worker
            for role in roles
            for worker in build_workers(client, settings, role=role, executor=executor)
        ]
        async with contextlib.AsyncExitStack() as stack:
            # Entered last, the jobs worker stops first: a job step (a local activity) that waits
            # on an account or the contract book still finds their workers running.
            for worker in reversed(workers):
                await stack.enter_async_context(worker)
            queue = settings.task_queue_ledger
            await registry.register_user(client, operator, task_queue=queue)
            await registry.register_user(client, user, task_queue=queue)
            provider = await ledger.open_account(
                client, owner=operator.name, task_queue=queue, account=settings.provider_account
            )
            payer = await ledger.open_account(client, owner=user.name, task_queue=queue)
            await ledger.deposit(client, payer, funds, operator=operator)
            env = Deployment(client, settings, user, payer, provider, Decimal(funds), operator)
            if any(role in ("all", "jobs") for role in roles):
                await ensure_sweep_schedule(client, settings)
                stack.push_async_callback(delete_sweep_schedule, client, settings)
            yield env
            if os.environ.get(RECORD_ENV):
                await record_histories(client, env.submitted)


@pytest.fixture
async def deployed(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    async with deployment(client, job_settings) as env:
        yield env


TEST_CALCULATIONS = Path(__file__).parent.parent / "compute" / "test_calculations.toml"


@pytest.fixture
async def test_calcs(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    """A deployment whose compute service "test" offers the test calculations (fail, sleepy...)."""
    settings = job_settings.model_copy(update={"calculations_file": TEST_CALCULATIONS})
    async with deployment(client, settings) as env:
        yield env


@pytest.fixture
async def short_expiry(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    """A deployment whose jobs expire twelve seconds after submission."""
    settings = job_settings.model_copy(update={"job_expiry_seconds": 12})
    async with deployment(client, settings) as env:
        yield env


async def delete_sweep_schedule(client: Client, settings: Settings) -> None:
    try:
        await client.get_schedule_handle(sweep_schedule_id(settings)).delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
