"""JobSheet.load gives the same sheet from the workflow and, after the end, from the store;
outputs are kept for the retention period, then deleted, and the workflow closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from jobsheet.jobs.client import job_handle, trigger_run
from jobsheet.jobs.models import JobSheet, JobState, ParKind, job_prefix
from jobsheet.objectstore import internal_client
from jobsheet.settings import Settings
from tests.jobs.conftest import Deployment, deployment
from workflows.job_sheet import JobSheetWorkflow


@pytest.fixture
async def short_retention(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    # The workflow closes once the retention has ended and every PAR that could write under
    # the job's prefix has expired (the upload PAR at the job's expiry, write PUTs soon after
    # the run): all of them short here.
    settings = job_settings.model_copy(
        update={"retention_seconds": 15, "job_expiry_seconds": 20, "write_url_seconds": 10}
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

    # While the workflow keeps the outputs it answers; its answer equals the persisted copy.
    during = await env.wait_for(submitted.uid, JobState.SUCCEEDED)
    handle = job_handle(env.client, submitted.uid)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    live = await JobSheet.load(submitted.uid, client=env.client, settings=env.settings)
    assert live == during
    assert not live.outputs_deleted and live.outputs
    assert (await env.downloads(submitted.uid)).pars

    # After the retention the outputs are gone and the workflow closes on its own.
    final = await asyncio.wait_for(handle.result(), 60)
    assert final.outputs_deleted
    s3 = internal_client(env.settings)
    assert list(s3.list_objects(env.settings.bucket, prefix=job_prefix(submitted.uid))) == []
    assert all(par.closed_at for par in final.pars if par.kind == ParKind.DOWNLOAD)
    after = await JobSheet.load(submitted.uid, client=env.client, settings=env.settings)
    assert after == final
    # A query on the closed workflow (replayed from history) agrees too.
    assert await handle.query(JobSheetWorkflow.get_sheet) == final

    never = await JobSheet.load("job-" + "0" * 32, client=env.client, settings=env.settings)
    assert never.is_null()
    assert JobSheet.from_data(final.to_data()) == final
    assert JobSheet.from_data(None).is_null()
