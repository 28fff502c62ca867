"""The whole lifecycle through the SDK: submit, upload, run over HTTP, watch, download."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from jobsheet.core.objectstore import internal_client
from jobsheet.jobs.models import JobState, sheet_key
from jobsheet.sdk import BadInput, Client, TransferProgress
from tests.sdk.conftest import SdkEnv


async def test_submit_upload_run_watch_download(sdk_env: SdkEnv, tmp_path: Path) -> None:
    data = b"to be checksummed\n" * 50_000
    source = tmp_path / "input.txt"
    source.write_bytes(data)
    before = await sdk_env.deployment.balances()

    job = await sdk_env.sdk.submit("checksum", {}, source, sdk_env.account, "20.00")
    assert job.uid.startswith("job-")
    assert job.upload_url and job.run_url and job.expires_at
    assert job.run_url.startswith(sdk_env.settings.api_url + "/par/run/")

    steps: list[TransferProgress] = []
    assert await job.upload(progress=steps.append) == len(data)
    assert steps[-1].done == steps[-1].total == len(data)
    assert [s.done for s in steps] == sorted(s.done for s in steps)

    triggered = await job.run()
    assert triggered.status in (200, 202)

    events = [event async for event in job.watch(interval=0.1)]
    states = [event.state for event in events if event.kind == "state"]
    assert states == [
        JobState.SUBMITTED,
        JobState.AWAITING_UPLOAD,
        JobState.RUNNING,
        JobState.SETTLING,
        JobState.SUCCEEDED,
    ]
    assert events[-1].terminal

    sheet = await job.result()
    assert sheet.state == JobState.SUCCEEDED
    out = tmp_path / "out"
    downloaded: list[TransferProgress] = []
    paths = await job.download(out, progress=downloaded.append)
    assert {p.name for p in paths} >= {"sha256.txt", "wc.txt"}
    assert (out / "files" / "sha256.txt").read_text().strip() == hashlib.sha256(data).hexdigest()
    assert {d.name for d in downloaded} >= {"sha256.txt", "wc.txt"}

    after = await sdk_env.deployment.balances()
    assert after[0] == before[0] - sheet.costs.charged
    assert after[2] == before[2] + sheet.costs.charged

    # The same job, reattached by uid and loaded, and listed by account, user and state.
    again = sdk_env.sdk.job(job.uid)
    assert again.run_url == job.run_url
    assert (await sdk_env.sdk.load(job.uid)).state == JobState.SUCCEEDED
    listed = await sdk_env.sdk.list_jobs(account=sdk_env.account)
    assert [s.uid for s in listed] == [job.uid]
    assert listed[0].calculation == "checksum"
    by_user = await sdk_env.sdk.list_jobs(user=sdk_env.deployment.user.name, state="succeeded")
    assert [s.uid for s in by_user] == [job.uid]
    assert await sdk_env.sdk.list_jobs(account=sdk_env.account, state=JobState.RUNNING) == []

    # A job Temporal no longer has is still found from its persisted sheet.
    gone = sheet.model_copy(update={"uid": "job-" + "f" * 32})
    body = json.dumps(gone.to_data()).encode()
    deployed = sdk_env.deployment.settings
    s3 = internal_client(deployed)
    s3.put_object(deployed.bucket, sheet_key(gone.uid), io.BytesIO(body), len(body))
    listed = await sdk_env.sdk.list_jobs(account=sdk_env.account, state="succeeded")
    assert {(s.uid, s.source) for s in listed} == {(job.uid, "temporal"), (gone.uid, "store")}
    assert (await sdk_env.sdk.load(gone.uid)).costs == sheet.costs


async def test_missing_input_and_no_user(sdk_env: SdkEnv, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        await sdk_env.sdk.submit("checksum", {}, tmp_path / "nope", sdk_env.account, "5.00")
    anonymous = Client(sdk_env.settings.model_copy(update={"user": None}))
    with pytest.raises(BadInput, match="no user"):
        await anonymous.list_jobs()


async def test_a_calculation_that_reads_no_input_is_submitted_without_one(
    sdk_env: SdkEnv,
) -> None:
    """No file to promise: the job's upload is an empty object, and the answer says what the
    cheque held."""
    job = await sdk_env.sdk.submit(
        "monte-carlo-pi", {"samples": 2000}, None, sdk_env.account, "20.00"
    )
    assert job.no_input and job.input_path is None
    sheet = await job.sheet()
    assert job.held == sheet.costs.held and job.held is not None and job.held > 0
    assert sheet.request is not None and sheet.request.input_size == 0
    assert await job.upload() == 0
    assert (await job.run()).status in (200, 202)
    assert (await job.result()).state == JobState.SUCCEEDED
    # Reattached by uid on the same machine, it still knows it has no input to upload.
    assert sdk_env.sdk.job(job.uid).no_input
