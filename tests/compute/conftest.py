"""Fixtures for the compute service: a PAR gateway, in-process compute workers and helpers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.jobs import JobActivities
from jobsheet.compute.config import load_compute_config
from jobsheet.compute.contracts import contract_for
from jobsheet.compute.models import (
    RUN_ACTIVITY,
    ComputeContract,
    ReleaseResult,
    RunRequest,
    RunResult,
)
from jobsheet.core.objectstore import presign_client
from jobsheet.core.settings import Settings
from jobsheet.jobs.messages import ReleaseInput, ReserveInput
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.jobs.store import write_sheet
from jobsheet.pars.read import MAX_PRESIGN, ReadPar
from jobsheet.pars.write import issue_write_par
from tests.api_server import ApiServer
from tests.compute.harness import CallComputeWorkflow, CallInput
from worker import compute_workers

TEST_CALCULATIONS = Path(__file__).with_name("test_calculations.toml")


@dataclass
class ComputeHarness:
    """Calls compute activities through a real workflow, as the job sheet will."""

    client: Client
    settings: Settings
    s3: Minio
    task_queue: str

    async def start(
        self,
        activity: str,
        argument: BaseModel,
        *,
        service: str,
        heartbeat_timeout: float | None = 5.0,
        attempts: int = 3,
    ) -> WorkflowHandle[Any, dict[str, Any]]:
        return await self.client.start_workflow(
            CallComputeWorkflow.run,
            CallInput(
                activity=activity,
                task_queue=self.settings.compute_task_queue(service),
                argument=argument.model_dump(mode="json"),
                heartbeat_timeout_seconds=heartbeat_timeout,
                maximum_attempts=attempts,
            ),
            id=f"call-{activity}-{uuid.uuid4().hex}",
            task_queue=self.task_queue,
        )

    async def call(self, activity: str, argument: BaseModel, **options: Any) -> dict[str, Any]:
        handle = await self.start(activity, argument, **options)
        return await handle.result()

    def draft(
        self,
        calculation: str,
        parameters: dict[str, Any] | None = None,
        *,
        service: str,
        job_uid: str | None = None,
    ) -> ComputeContract:
        """The contract the job sheet drafts (``ContractRefused`` when it would refuse)."""
        now = datetime.now(UTC).replace(microsecond=0)
        return contract_for(
            load_compute_config(self.settings.calculations_file),
            job_uid=job_uid or f"job-{uuid.uuid4().hex[:12]}",
            service=service,
            calculation=calculation,
            parameters=parameters or {},
            task_queue=self.settings.compute_task_queue(service),
            run_by=now + timedelta(hours=1),
            now=now,
        )

    async def reserve(self, contract: ComputeContract) -> ComputeContract:
        """Have the service's contract book hold ``contract``, as the job sheet's step does."""
        config = load_compute_config(self.settings.calculations_file)
        capacity = config.service(contract.service).max_open_contracts
        steps = JobActivities(self.client, self.settings)
        return await ActivityEnvironment().run(
            steps.reserve_contract, ReserveInput(contract=contract, max_open_contracts=capacity)
        )

    async def release(self, contract_id: str, *, service: str) -> ReleaseResult:
        steps = JobActivities(self.client, self.settings)
        release = ReleaseInput(
            contract_id=contract_id, task_queue=self.settings.compute_task_queue(service)
        )
        return await ActivityEnvironment().run(steps.release_contract, release)

    async def contract(
        self, calculation: str, parameters: dict[str, Any] | None = None, *, service: str
    ) -> ComputeContract:
        return await self.reserve(self.draft(calculation, parameters, service=service))

    def run_request(
        self, contract: ComputeContract, input_bytes: bytes | None = b"hello world\n"
    ) -> RunRequest:
        """Upload the input (unless None) and issue the read and bucket-write PARs for it; the
        job's sheet says running, as the job sheet workflow persists it before a run."""
        key = f"jobs/{contract.job_uid}/input"
        if input_bytes is not None:
            self.s3.put_object(self.settings.bucket, key, io.BytesIO(input_bytes), len(input_bytes))
        running = JobSheet(uid=contract.job_uid, state=JobState.RUNNING)
        write_sheet(self.s3, self.settings.bucket, running)
        return RunRequest(
            contract=contract,
            input=issue_read_par(self.settings, key, timedelta(minutes=10)),
            output=issue_write_par(
                self.settings,
                job_uid=contract.job_uid,
                prefix=output_prefix(contract),
                expires_at=datetime.now(UTC) + timedelta(minutes=10),
            ),
        )

    async def run(self, request: RunRequest, **options: Any) -> RunResult:
        options.setdefault("service", request.contract.service)
        return RunResult.model_validate(await self.call(RUN_ACTIVITY, request, **options))

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix``, key to content."""
        found = {}
        for item in self.s3.list_objects(self.settings.bucket, prefix=prefix, recursive=True):
            assert item.object_name is not None
            response = self.s3.get_object(self.settings.bucket, item.object_name)
            try:
                found[item.object_name] = response.read()
            finally:
                response.close()
                response.release_conn()
        return found


def book_contract(number: int, deadline: datetime, service: str = "test") -> ComputeContract:
    """A contract for the contract book alone (job ``job-<number>``), due at ``deadline``."""
    now = datetime.now(UTC)
    return ComputeContract(
        contract_id=f"job-{number}@{service}",
        job_uid=f"job-{number}",
        service=service,
        task_queue="q",
        calculation="echo",
        parameters={},
        price_per_second=Decimal("0.01"),
        fee=Decimal("0.05"),
        quote=Decimal("0.35"),
        max_runtime_seconds=30,
        max_output_bytes=1000,
        run_by=now,
        deadline=deadline,
        run_token="t" * 43,
        created_at=now,
    )


def output_prefix(contract: ComputeContract) -> str:
    return f"jobs/{contract.job_uid}/outputs/"


@contextlib.asynccontextmanager
async def running_harness(
    client: Client, settings: Settings, s3: Minio, task_queue: str, services: list[str]
) -> AsyncIterator[ComputeHarness]:
    """Compute workers (built by worker.py's compute_workers) plus the calling workflow's worker."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
        workers = compute_workers(client, settings, executor, services)
        workers.append(Worker(client, task_queue=task_queue, workflows=[CallComputeWorkflow]))
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            yield ComputeHarness(client=client, settings=settings, s3=s3, task_queue=task_queue)


@pytest.fixture
def compute_settings(gateway: ApiServer, task_queue: str) -> Settings:
    """Settings with the test calculations and compute task queues of this test's own."""
    return gateway.settings.model_copy(
        update={
            "calculations_file": TEST_CALCULATIONS,
            "compute_task_queue_prefix": f"{task_queue}-compute-",
        }
    )


@pytest.fixture
async def compute(
    client: Client, compute_settings: Settings, s3: Minio, task_queue: str
) -> AsyncIterator[ComputeHarness]:
    """In-process workers for the test services ``test`` and ``other``."""
    async with running_harness(
        client, compute_settings, s3, task_queue, ["test", "other"]
    ) as harness:
        yield harness


@pytest.fixture
async def shipped_compute(
    client: Client, gateway: ApiServer, s3: Minio, task_queue: str
) -> AsyncIterator[ComputeHarness]:
    """In-process workers for every service in the shipped calculations file."""
    settings = gateway.settings.model_copy(
        update={"compute_task_queue_prefix": f"{task_queue}-compute-"}
    )
    async with running_harness(client, settings, s3, task_queue, []) as harness:
        yield harness


def issue_read_par(settings: Settings, key: str, expires: timedelta) -> ReadPar:
    """Presign a GET of ``key`` in the settings' bucket, valid for ``expires`` (at most 7 days).

    Needs the S3 credentials, so only the storage side (never compute) calls it.
    """
    if not timedelta(seconds=1) <= expires <= MAX_PRESIGN:
        raise ValueError(f"a read PAR lasts between 1 second and 7 days, not {expires}")
    now = datetime.now(UTC).replace(microsecond=0)
    url = presign_client(settings).presigned_get_object(settings.bucket, key, expires=expires)
    return ReadPar(url=url, key=key, expires_at=now + expires)
