"""load_sheet gives the same sheet from the workflow and, after the end, from the store; the
workflow completes with the job, and the storage sweep deletes the outputs after the retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobSheet, JobState, ParKind, job_prefix
from jobsheet.jobs.operations import job_handle, load_sheet, trigger_run
from tests.jobs.conftest import Deployment, deployment
from workflows.job_sheet import JobSheetWorkflow


@pytest.fixture
async def short_retention(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    # The sweep deletes the outputs once the retention has ended, and sweeps the prefix once
    # every PAR that could write under it has expired: all of them short here.
    settings = job_settings.model_copy(
        update={
            "retention_seconds": 15,
            "job_expiry_seconds": 20,
            "write_url_seconds": 10,
            "sweep_interval_seconds": 2,
        }
    )
    async with deployment(client, settings) as env:
        yield env


async def test_load_before_and_after_the_end_and_retention(short_retention: Deployment) -> None:
    env = short_retention
    data = b"keep me for a while\n"
    submitted = await env.submit(env.request(data))
    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data)).status_code == 200
    await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])

    # While the job runs its workflow answers; once it ended, its workflow has completed with
    # the final sheet, and the store's copy is the same sheet.
    running = await load_sheet(env.client, env.settings, submitted.uid)
    assert running.state in (JobState.RUNNING, JobState.SETTLING, JobState.SUCCEEDED)
    ended = await env.wait_for(submitted.uid, JobState.SUCCEEDED)
    handle = job_handle(env.client, submitted.uid)
    final = await asyncio.wait_for(handle.result(), 10)
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert ended == final
    assert not final.outputs_deleted and final.outputs
    assert (await env.downloads(submitted.uid)).pars
    # A query on the closed workflow (replayed from history) agrees too.
    assert await handle.query(JobSheetWorkflow.get_sheet) == final

    # After the retention the sweep deletes the outputs and says so on the stored sheet.
    s3 = internal_client(env.settings)

    async def swept() -> JobSheet:
        while True:
            after = await load_sheet(env.client, env.settings, submitted.uid)
            gone = not list(s3.list_objects(env.settings.bucket, prefix=job_prefix(submitted.uid)))
            if after.outputs_deleted and gone:
                return after
            await asyncio.sleep(0.5)

    after = await asyncio.wait_for(swept(), 90)
    assert all(par.closed_at for par in after.pars if par.kind == ParKind.DOWNLOAD)
    assert after.model_copy(update={"outputs_deleted": False, "pars": final.pars}) == final

    never = await load_sheet(env.client, env.settings, "job-" + "0" * 32)
    assert never.is_null()
    assert JobSheet.from_data(final.to_data()) == final
    assert JobSheet.from_data(None).is_null()
