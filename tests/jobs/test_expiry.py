"""Expiry on the time-skipping server: no trigger for an hour undoes everything.

The job sheet workflow runs on the time-skipping server, so its one-hour timer passes at once;
its steps are real and act on the ledger and contract book kept on the dev server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
from datetime import timedelta

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import contract_book
from activities.jobs import JobActivities
from activities.storage import StorageActivities
from jobsheet.compute.models import ContractState
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.models import JobState, ParKind, input_key
from jobsheet.jobs.operations import job_start
from jobsheet.jobs.store import read_sheet
from jobsheet.ledger.cheque import write_cheque
from tests.jobs.conftest import deployment
from workflows.job_sheet import JobSheetWorkflow


@contextlib.asynccontextmanager
async def time_skipping_workers(time_client: Client, dev_client: Client, settings: Settings):
    """The job sheet on the time-skipping server; its steps (local activities) reach the dev
    server's ledger and contract book."""
    storage = StorageActivities(settings)
    steps = JobActivities(dev_client, settings)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            time_client,
            task_queue=settings.task_queue_jobs,
            workflows=[JobSheetWorkflow],
            activities=[*storage.all(), *steps.all()],
            activity_executor=executor,
        ):
            yield


async def test_no_trigger_for_an_hour_undoes_everything(
    client: Client, time_env: WorkflowEnvironment, job_settings: Settings
) -> None:
    settings = job_settings.model_copy(update={"job_search_attributes": False})
    async with deployment(client, settings) as env:
        before = await env.balances()
        data = b"never run\n" * 10
        request = env.request(data)
        resource = request.fingerprint()
        start = job_start(
            request=request,
            authorisation=sign_authorisation(env.user, resource),
            cheque=write_cheque(
                env.user,
                account=env.payer,
                recipient=env.provider,
                resource=resource,
                max_spend="20.00",
            ),
        )
        async with time_skipping_workers(time_env.client, client, env.settings):
            handle = await time_env.client.start_workflow(
                JobSheetWorkflow.run, start, id=start.uid, task_queue=settings.task_queue_jobs
            )

            async def paid_for() -> None:
                # Watched on the dev server's ledger, not by a query: the job's first workflow
                # task runs its local activities, and the test server answers queries late.
                while True:
                    if (await env.balances())[1] > 0:
                        return
                    await asyncio.sleep(0.2)

            try:
                await asyncio.wait_for(paid_for(), 60)
            except BaseException:
                await handle.terminate("the test failed")  # leave the shared test server clean
                raise
            held = await env.balances()
            assert held[1] > 0, "the cheque was cashed: money is held"
            s3 = internal_client(env.settings)
            s3.put_object(env.settings.bucket, input_key(start.uid), io.BytesIO(data), len(data))

            sheet = await handle.result()  # the hour passes here, skipped

        assert sheet.state == JobState.EXPIRED
        assert sheet.expires_at is not None
        assert sheet.expires_at - sheet.timeline[0].at >= timedelta(minutes=59, seconds=59)
        assert sheet.timeline[-1].at >= sheet.expires_at
        assert [e.state for e in sheet.timeline] == [
            JobState.SUBMITTED,
            JobState.AWAITING_UPLOAD,
            JobState.EXPIRED,
        ]
        # Money back, uploads gone, contract released, PARs closed, sheet persisted.
        assert await env.balances() == before
        assert sheet.costs.charged == 0 and sheet.costs.refunded == sheet.costs.held > 0
        assert list(s3.list_objects(env.settings.bucket, prefix=input_key(start.uid))) == []
        assert sheet.contract is not None and sheet.contract.released
        record = await contract_book.contract_record(
            client, sheet.contract.contract_id, task_queue=sheet.contract.task_queue
        )
        assert record is not None and record.state == ContractState.RELEASED
        assert {par.kind for par in sheet.pars} >= {ParKind.UPLOAD, ParKind.RUN}
        assert all(par.closed_at is not None for par in sheet.pars)
        persisted = read_sheet(s3, env.settings.bucket, start.uid)
        assert persisted == sheet
