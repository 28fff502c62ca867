"""The run PAR over plain HTTP: it triggers a real job, and every refusal changes nothing."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import httpx
from temporalio.client import WorkflowExecutionStatus

from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.jobs.operations import job_handle
from tests.api.conftest import Deployment

DATA = b"pay per job, trigger by URL\n" * 200


def altered(token: str) -> str:
    """``token`` with one character changed."""
    swap = "A" if token[5] != "A" else "B"
    return token[:5] + swap + token[6:]


def split_run_url(url: str) -> tuple[str, str, str]:
    """(gateway base, uid, token) of a run PAR URL ``{gateway}/par/run/{uid}/{token}``."""
    base, _, rest = url.partition("/par/run/")
    uid, _, token = rest.partition("/")
    return base, uid, token


async def history_length(env: Deployment, uid: str) -> int:
    """The job's history length once the workflow is idle (no activity or task in flight).

    A state change is visible before the activity that persists it has finished, so the history
    still grows for a moment after it; a comparison is only fair once the workflow waits.
    """

    async def idle() -> int:
        while True:
            description = await job_handle(env.client, uid).describe()
            raw = description.raw_description
            if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
                return description.history_length
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(idle(), 60)


def unchanged(before: JobSheet, after: JobSheet) -> bool:
    return before.model_dump() == after.model_dump()


async def test_the_run_par_url_triggers_a_real_job(deployed: Deployment) -> None:
    submitted = await deployed.submit(deployed.request(DATA))
    async with httpx.AsyncClient(timeout=60) as http:
        assert (await http.put(submitted.upload_url, content=DATA)).status_code == 200

        hint = await http.get(submitted.run_url)
        assert hint.status_code == 405
        assert hint.headers["allow"] == "POST" and "POST" in hint.json()["message"]

        response = await http.post(submitted.run_url)
        assert response.status_code == 202, response.text
        assert response.json() == {
            "uid": submitted.uid,
            "state": "running",
            "started": True,
            "message": "the run starts",
        }
        sheet = await deployed.wait_for(submitted.uid, JobState.SUCCEEDED, JobState.FAILED)
        assert sheet.state == JobState.SUCCEEDED, sheet.error

        # A second call is refused with 409 (the job ended) and changes nothing: not the sheet,
        # not the money.
        balances = await deployed.balances()
        length = await history_length(deployed, submitted.uid)
        again = await http.post(submitted.run_url)
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "WrongState"
        assert "already ended as succeeded" in again.json()["message"]
    assert unchanged(sheet, await deployed.sheet(submitted.uid))
    assert await deployed.balances() == balances
    assert await history_length(deployed, submitted.uid) == length


async def test_wrong_altered_or_unknown_pars_get_404_and_change_nothing(
    deployed: Deployment,
) -> None:
    submitted = await deployed.submit(deployed.request(DATA))
    base, uid, token = split_run_url(submitted.run_url)
    before = await deployed.sheet(uid)
    balances = await deployed.balances()
    length = await history_length(deployed, uid)
    other_uid = "job-" + secrets.token_hex(16)
    calls = {
        "wrong token": f"{base}/par/run/{uid}/{secrets.token_urlsafe(32)}",
        "altered token": f"{base}/par/run/{uid}/{altered(token)}",
        "short token": f"{base}/par/run/{uid}/{token[:12]}",
        "unknown job": f"{base}/par/run/{other_uid}/{token}",
        "not a job uid": f"{base}/par/run/workflow-of-someone-else/{token}",
    }
    async with httpx.AsyncClient(timeout=60) as http:
        answers = {name: await http.post(url) for name, url in calls.items()}
    bodies = {response.json()["message"] for response in answers.values()}
    for name, response in answers.items():
        assert response.status_code == 404, (name, response.text)
        assert response.json()["error"] == "NotFound", name
    assert len(bodies) == 1  # the same answer whatever was wrong: nothing is revealed
    # The validator refused each call before it reached history.
    assert await history_length(deployed, uid) == length
    assert unchanged(before, await deployed.sheet(uid))
    assert await deployed.balances() == balances


async def test_trigger_before_or_with_a_wrong_upload_gets_422(deployed: Deployment) -> None:
    submitted = await deployed.submit(deployed.request(DATA))
    before = await deployed.sheet(submitted.uid)
    balances = await deployed.balances()
    async with httpx.AsyncClient(timeout=60) as http:
        missing = await http.post(submitted.run_url)
        assert missing.status_code == 422, missing.text
        assert missing.json()["error"] == "InputNotReady"
        assert "no input has been uploaded" in missing.json()["message"]

        wrong = bytes(reversed(DATA))  # same size, other bytes
        assert (await http.put(submitted.upload_url, content=wrong)).status_code == 200
        mismatch = await http.post(submitted.run_url)
        assert mismatch.status_code == 422, mismatch.text
        assert "sha256" in mismatch.json()["message"]
    after = await deployed.sheet(submitted.uid)
    assert after.state == JobState.AWAITING_UPLOAD
    assert unchanged(before, after)
    assert await deployed.balances() == balances


async def test_an_expired_run_par_gets_410_and_changes_nothing(short_expiry: Deployment) -> None:
    env = short_expiry
    submitted = await env.submit(env.request(DATA))
    base, uid, token = split_run_url(submitted.run_url)
    expired = await env.wait_for(uid, JobState.EXPIRED, within=60)
    assert expired.costs.refunded == expired.costs.held

    # Wait until the workflow has closed: from now on only the gateway can judge the token.
    ended = await asyncio.wait_for(job_handle(env.client, uid).result(), 60)
    assert ended.state == JobState.EXPIRED
    description = await job_handle(env.client, uid).describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    balances = await env.balances()
    assert balances == (env.initial_funds, Decimal(0), Decimal(0))

    async with httpx.AsyncClient(timeout=60) as http:
        gone = await http.post(submitted.run_url)
        assert gone.status_code == 410, gone.text
        assert gone.json()["error"] == "Expired"
        # Even now a wrong or altered token learns nothing about the job.
        for bad in (altered(token), secrets.token_urlsafe(32)):
            refused = await http.post(f"{base}/par/run/{uid}/{bad}")
            assert refused.status_code == 404, refused.text
    assert unchanged(expired, await env.sheet(uid))
    assert await env.balances() == balances
