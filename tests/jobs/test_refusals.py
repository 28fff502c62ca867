"""Triggers that must be refused with a clear message, and charge nothing."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from jobsheet.jobs.models import JobState
from jobsheet.jobs.operations import job_handle, trigger_run
from tests.jobs.conftest import Deployment


async def _refusal(deployed: Deployment, uid: str, token: str) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await trigger_run(deployed.client, uid, token)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def _token(run_url: str) -> str:
    return run_url.rsplit("/", 1)[1]


async def test_refused_triggers_change_nothing_and_the_job_expires_free(
    short_expiry: Deployment,
) -> None:
    env = short_expiry
    before = await env.balances()
    data = b"0123456789" * 100
    submitted = await env.submit(env.request(data))
    token = _token(submitted.run_url)

    before_upload = await _refusal(env, submitted.uid, token)
    assert before_upload.type == "InputNotReady"
    assert "no input has been uploaded yet" in before_upload.message

    wrong = await _refusal(env, submitted.uid, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert wrong.type == "WrongToken"

    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data[:-1])).status_code == 200
    wrong_size = await _refusal(env, submitted.uid, token)
    assert wrong_size.type == "InputNotReady"
    assert f"the input is {len(data) - 1} bytes but the request promised {len(data)}" in (
        wrong_size.message
    )

    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data[::-1])).status_code == 200
    wrong_sum = await _refusal(env, submitted.uid, token)
    assert "sha256" in wrong_sum.message

    sheet = await env.sheet(submitted.uid)
    assert sheet.state == JobState.AWAITING_UPLOAD
    assert sheet.costs.charged == 0

    # After the deadline the trigger is refused and everything is undone.
    final = await job_handle(env.client, submitted.uid).result()
    assert final.state == JobState.EXPIRED
    with pytest.raises(Exception, match=r"completed|Expired|expired"):
        await trigger_run(env.client, submitted.uid, token)
    assert await env.balances() == before
    assert final.costs.charged == 0
    assert final.costs.refunded == final.costs.held


async def test_a_second_trigger_is_harmless(deployed: Deployment) -> None:
    data = b"twice\n"
    submitted = await deployed.submit(deployed.request(data))
    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data)).status_code == 200
    token = _token(submitted.run_url)
    first = await trigger_run(deployed.client, submitted.uid, token)
    assert first.started
    second = await _refusal(deployed, submitted.uid, token)
    assert second.type in ("AlreadyTriggered", "WrongState")
    sheet = await deployed.wait_for(submitted.uid, JobState.SUCCEEDED)
    assert [e.state for e in sheet.timeline].count(JobState.RUNNING) == 1
    assert hashlib.sha256(data).hexdigest() == sheet.request.input_sha256  # type: ignore[union-attr]


async def test_submission_refusals_reject_the_job_and_hold_nothing(deployed: Deployment) -> None:
    before = await deployed.balances()
    data = b"x"
    unknown = deployed.request(data, "no-such-calculation")
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await deployed.submit(unknown)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "JobRejected"
    assert "UnknownCalculation" in cause.message
    rejected = await deployed.wait_for(deployed.submitted[-1], JobState.REJECTED)
    assert rejected.error and "UnknownCalculation" in rejected.error
    assert [entry.state for entry in rejected.timeline] == [JobState.SUBMITTED, JobState.REJECTED]

    too_little = deployed.request(data)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await deployed.submit(too_little, max_spend="0.01")
    assert "OverMaxSpend" in str(caught.value.cause)

    assert await deployed.balances() == before


@pytest.mark.parametrize(
    ("service", "calculation", "error", "named"),
    [
        ("nosuch", "checksum", "UnknownService", "known services: science, standard"),
        ("science", "checksum", "UnknownCalculation", "it runs on: standard"),
        ("standard", "nosuch", "UnknownCalculation", "checksum, monte-carlo-pi, text-stats"),
    ],
    ids=["service", "calculation-elsewhere", "calculation"],
)
async def test_an_unknown_service_or_calculation_is_refused_at_once(
    deployed: Deployment, service: str, calculation: str, error: str, named: str
) -> None:
    """Refused by the operator's policy, naming what exists, before anything is done: no
    compute queue is waited for (one nobody polls used to hold the submission 2 minutes)."""
    before = await deployed.balances()
    request = deployed.request(b"x", calculation, service=service)
    started = time.monotonic()
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await deployed.submit(request)
    elapsed = time.monotonic() - started
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "JobRejected"
    assert cause.message.startswith(f"{error}: ") and named in cause.message
    assert elapsed < 2.0, f"refused after {elapsed:.2f}s"
    rejected = await deployed.wait_for(deployed.submitted[-1], JobState.REJECTED)
    assert [entry.state for entry in rejected.timeline] == [JobState.SUBMITTED, JobState.REJECTED]
    assert rejected.contract is None and rejected.credit_notes == [] and rejected.pars == []
    assert await deployed.balances() == before
