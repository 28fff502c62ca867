"""PARs die with their job: the bucket-write PAR grants nothing unless the job is running, what
the owner downloads is sealed where no PAR writes, and the storage sweep deletes late writes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobState, ParKind, job_prefix, output_prefix, staging_prefix
from jobsheet.jobs.operations import trigger_run
from jobsheet.pars.write import issue_write_par
from tests.jobs.conftest import TEST_CALCULATIONS, Deployment, deployment


@pytest.fixture
async def short_lived(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    """The test calculations; outputs kept 20 s, write PUTs living 25 s, jobs expiring 20 s
    after submission: the job's whole clean-up fits in a test."""
    settings = job_settings.model_copy(
        update={
            "calculations_file": TEST_CALCULATIONS,
            "retention_seconds": 20,
            "write_url_seconds": 25,
            "job_expiry_seconds": 20,
            "sweep_interval_seconds": 2,
        }
    )
    async with deployment(client, settings) as env:
        yield env


def stored(env: Deployment, prefix: str) -> list[str]:
    s3 = internal_client(env.settings)
    found = s3.list_objects(env.settings.bucket, prefix=prefix, recursive=True)
    return sorted(item.object_name for item in found if item.object_name)


async def test_the_write_par_dies_with_the_job_and_cannot_change_its_outputs(
    short_lived: Deployment, tmp_path: Path
) -> None:
    env = short_lived
    data = b"input\n"
    request = env.request(data, "sleepy", service="test", marker=str(tmp_path / "marker"))
    submitted = await env.submit(request)
    uid = submitted.uid
    sheet = await env.sheet(uid)
    assert sheet.contract is not None
    write = [par for par in sheet.pars if par.kind == ParKind.BUCKET_WRITE]
    assert [par.target for par in write] == [staging_prefix(uid)]
    # What an attacker who captured the job's bucket-write PAR holds (the same signed token).
    captured = issue_write_par(
        env.settings,
        job_uid=uid,
        prefix=staging_prefix(uid),
        expires_at=sheet.contract.deadline,
        url_seconds=25,
    ).url

    async with httpx.AsyncClient(timeout=30) as http:
        early = await http.post(captured, json={"key": "stdout.txt"})
        assert early.status_code == 410, early.text
        assert early.json()["error"] == "JobNotRunning"

        assert (await http.put(submitted.upload_url, content=data)).status_code == 200
        await trigger_run(env.client, uid, submitted.run_url.rsplit("/", 1)[1])
        # While the job runs, the capability grants PUTs under the staging prefix only.
        grant: dict[str, str] = {}
        while not grant:
            answer = await http.post(captured, json={"key": "stdout.txt"})
            if answer.status_code == 200:
                grant = answer.json()
            else:
                assert answer.json()["error"] == "JobNotRunning", answer.text
                await asyncio.sleep(0.05)
        assert grant["key"] == staging_prefix(uid) + "stdout.txt"

        ended = await env.wait_for(uid, *[s for s in JobState if s.terminal], within=60)
        assert ended.state == JobState.TIMED_OUT
        assert ended.outputs and ended.outputs_discarded == []
        assert all(output.key.startswith(output_prefix(uid)) for output in ended.outputs)
        assert stored(env, staging_prefix(uid)) == []

        # Once the job left running, the capability grants nothing, and answers in a second.
        started = asyncio.get_running_loop().time()
        late = await http.post(captured, json={"key": "stdout.txt"})
        assert asyncio.get_running_loop().time() - started < 1.0
        assert late.status_code == 410 and late.json()["error"] == "JobNotRunning"
        assert "timed_out" in late.json()["message"]

        # A PUT granted while it ran still reaches S3, but only the staging prefix...
        forged = await http.put(grant["url"], content=b"forged output\n" * 1000)
        assert forged.status_code == 200
        assert stored(env, staging_prefix(uid)) == [grant["key"]]
        # ...so what the owner downloads is what the run wrote, and checks out.
        pars = await env.downloads(uid)
        for par in pars.pars:
            body = (await http.get(par.url)).content
            assert hashlib.sha256(body).hexdigest() == par.sha256 and len(body) == par.size
        assert {par.key for par in pars.pars} == {output.key for output in ended.outputs}

    # The retention ends, and once the last write PUT has expired the storage sweep deletes the
    # job's prefix (the late write included).
    async def swept() -> None:
        while True:
            if not stored(env, job_prefix(uid)) and (await env.sheet(uid)).outputs_deleted:
                return
            await asyncio.sleep(0.5)

    await asyncio.wait_for(swept(), 90)
