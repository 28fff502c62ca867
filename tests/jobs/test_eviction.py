"""A job whose workflow is evicted from the worker's cache at every step still ends, once.

With ``max_cached_workflows=0`` the jobs worker drops the run after each workflow task and
replays it from history for the next, cancelling its tasks on each eviction: the lifecycle's
shield must let that cancellation through instead of treating it as a cancel of the job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.jobs import JobActivities
from activities.storage import StorageActivities
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobState
from jobsheet.jobs.operations import trigger_run
from tests.jobs.conftest import deployment
from workflows.job_sheet import JobSheetWorkflow


async def test_a_job_evicted_at_every_step_still_ends(
    client: Client, job_settings: Settings
) -> None:
    async with deployment(client, job_settings, roles=("ledger", "compute")) as env:
        before = await env.balances()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
            async with Worker(
                client,
                task_queue=env.settings.task_queue_jobs,
                workflows=[JobSheetWorkflow],
                activities=[
                    *StorageActivities(env.settings).all(),
                    *JobActivities(client, env.settings).all(),
                ],
                activity_executor=executor,
                max_cached_workflows=0,
            ):
                data = b"evict me\n" * 20
                submitted = await env.submit(env.request(data))
                async with httpx.AsyncClient() as http:
                    assert (await http.put(submitted.upload_url, content=data)).status_code == 200
                await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
                sheet = await env.wait_for(
                    submitted.uid, *[s for s in JobState if s.terminal], within=60
                )
        assert sheet.state == JobState.SUCCEEDED, sheet.error
        assert [e.state for e in sheet.timeline].count(JobState.SUCCEEDED) == 1
        # The provider's payment is delivered by the payer's account shortly after the receipt.
        for _ in range(50):
            payer, held, provider = await env.balances()
            if held == 0 and payer + provider == before[0] + before[2]:
                break
            await asyncio.sleep(0.2)
        assert held == 0 and payer + provider == before[0] + before[2]
