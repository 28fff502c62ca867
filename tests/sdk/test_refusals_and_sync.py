"""Run PAR refusals and cancellation through the SDK, and the blocking wrappers for scripts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jobsheet.jobs.models import JobState
from jobsheet.sdk import RunRefused
from jobsheet.sdk.sync import SyncClient
from tests.sdk.conftest import SdkEnv


async def test_run_refusals_then_cancel(sdk_env: SdkEnv, tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_bytes(b"never uploaded\n")
    before = await sdk_env.deployment.balances()
    job = await sdk_env.sdk.submit("checksum", {}, source, sdk_env.account, "10.00")

    with pytest.raises(RunRefused) as missing:
        await job.run()
    assert missing.value.status == 422
    assert "input" in missing.value.message

    assert job.run_url is not None
    altered = job.run_url[:-4] + ("AAAA" if not job.run_url.endswith("AAAA") else "BBBB")
    job.run_url = altered
    with pytest.raises(RunRefused) as wrong:
        await job.run()
    assert wrong.value.status == 404

    sheet = await job.cancel("changed my mind")
    assert sheet.state == JobState.CANCELLED
    states = [event.state async for event in job.watch(interval=0.1) if event.kind == "state"]
    assert states == [JobState.SUBMITTED, JobState.AWAITING_UPLOAD, JobState.CANCELLED]
    assert await sdk_env.deployment.balances() == before


async def test_sync_client_runs_a_job(sdk_env: SdkEnv, tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_bytes(b"one two three\n" * 1000)

    def script() -> tuple[list[JobState], list[Path], JobState]:
        with SyncClient.connect(sdk_env.settings) as client:
            job = client.submit("checksum", {}, source, sdk_env.account, "10.00")
            job.upload()
            job.run()
            states = [event.state for event in job.watch(interval=0.1) if event.kind == "state"]
            paths = job.download(tmp_path / "out")
            return states, paths, client.load(job.uid).state

    # The workers run on this test's event loop: the blocking script runs in a thread.
    states, paths, final = await asyncio.to_thread(script)
    assert states[-1] == JobState.SUCCEEDED and final == JobState.SUCCEEDED
    assert states == sorted(set(states), key=states.index)
    assert any(path.name == "sha256.txt" for path in paths)
