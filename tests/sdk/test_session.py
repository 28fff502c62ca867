"""The SDK's requests without a server: signed as the API verifies them, retried when an answer
was lost (with the same body and Idempotency-Key), and refusals mapped to SDK errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from jobsheet.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
)
from jobsheet.cli.job_runtime import exit_code_for
from jobsheet.contracts.api import ApiError, SubmitRequest
from jobsheet.identity.http_signing import SignatureProblem
from jobsheet.identity.keys import key_path, load_identity
from jobsheet.jobs.models import JobState
from jobsheet.sdk import (
    BadInput,
    JobsheetError,
    NotFound,
    Refused,
    Unauthorised,
    Unavailable,
)
from jobsheet.sdk.api_errors import error_for
from tests.sdk.fakes import API_URL, PAYEE, fake_client, ok, refusal

BALANCE = {
    "account": "acct-one",
    "owner": "alice",
    "balance": "0.00",
    "held": "0.00",
    "available": "0.00",
    "in_flight": "0.00",
    "overdraft_limit": "0.00",
    "open_holds": 0,
}


def submit_answer(uid: str = "job-" + "a" * 32) -> dict[str, object]:
    return {
        "uid": uid,
        "state": "awaiting_upload",
        "upload_url": "http://s3.test/upload?sig=x",
        "run_url": f"{API_URL}/par/run/{uid}/token",
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "held": "5.00",
    }


async def test_requests_are_signed_for_the_url_they_go_to(tmp_path: Path) -> None:
    client, api = fake_client(tmp_path, lambda request: ok({"jobs": []}))
    assert await client.list_jobs(state="running", account="acct-one") == []
    request = api.requests[0]
    assert str(request.url) == f"{API_URL}/v1/jobs?state=running&account=acct-one"
    api.verify(request)
    assert 'keyid="alice/' in request.headers["signature-input"]

    # A changed query or body no longer verifies.
    moved = httpx.Request("GET", f"{API_URL}/v1/jobs?state=failed", headers=request.headers)
    moved.read()
    with pytest.raises(SignatureProblem):
        api.verify(moved)


async def test_a_lost_submit_is_sent_again_unchanged(tmp_path: Path) -> None:
    attempts: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.ReadError("the connection broke before the answer")
        if len(attempts) == 2:
            return refusal(503, "Unavailable", "the job service is unavailable")
        return ok(submit_answer(), 200)

    client, api = fake_client(tmp_path, answer)
    source = tmp_path / "input.txt"
    source.write_bytes(b"data\n")
    job = await client.submit("checksum", {}, source, "acct-one", "5.00")
    assert job.uid == "job-" + "a" * 32 and job.run_url and job.upload_url
    assert len(api.requests) == 3
    bodies = {request.content for request in api.requests}
    assert len(bodies) == 1, "every attempt sends the same signed body"
    for request in api.requests:
        api.verify(request)
    sent = SubmitRequest.model_validate_json(api.requests[0].content)
    assert sent.cheque.recipient == PAYEE and sent.request.user == "alice"
    assert client.job(job.uid).run_url == job.run_url  # kept in the local PAR store


async def test_idempotency_key_is_one_per_call_and_signed(tmp_path: Path) -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return refusal(502, "BadGateway", "proxy lost it")
        return ok(BALANCE, 201)

    client, api = fake_client(tmp_path, answer)
    view = await client.open_account("acct-one")
    assert view.account == "acct-one"
    keys = [request.headers["idempotency-key"] for request in api.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert '"idempotency-key"' in api.requests[1].headers["signature-input"]
    api.verify(api.requests[1])

    await client.open_account("acct-one")
    assert api.requests[2].headers["idempotency-key"] != keys[0]


async def test_unreachable_after_the_retries(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client, api = fake_client(tmp_path, down)
    with pytest.raises(Unavailable, match="could not be reached"):
        await client.balance("acct-one")
    assert len(api.requests) == client.api.retry.attempts


async def test_a_refusal_is_not_retried(tmp_path: Path) -> None:
    client, api = fake_client(
        tmp_path, lambda request: refusal(409, "InsufficientFunds", "acct-one has 0.00")
    )
    source = tmp_path / "input.txt"
    source.write_bytes(b"data\n")
    with pytest.raises(Refused, match="InsufficientFunds") as refused:
        await client.submit("checksum", {}, source, "acct-one", "5.00")
    assert refused.value.reason == "InsufficientFunds"
    assert len(api.requests) == 1


async def test_signup_keeps_the_key_only_after_the_api_registered_it(tmp_path: Path) -> None:
    def taken(request: httpx.Request) -> httpx.Response:
        return refusal(409, "UserExists", "bob exists")

    client, api = fake_client(tmp_path, taken, name="bob")
    with pytest.raises(Refused, match="UserExists"):
        await client.signup("bob")
    assert not key_path("bob", client.settings.config_dir).exists()
    assert "signature-input" not in api.requests[0].headers

    def created(request: httpx.Request) -> httpx.Response:
        public = json.loads(request.content)["public_key"]
        key = {"key_id": "ed25519:x", "public_key": public, "valid_from": "2026-01-01T00:00:00Z"}
        return ok({"user": "bob", "keys": [key]}, 201)

    client, api = fake_client(tmp_path, created, name="bob")
    view = await client.signup("bob")
    assert view.user == "bob"
    assert key_path("bob", client.settings.config_dir).exists()
    with pytest.raises(BadInput, match="already holds a key"):
        await client.signup("bob")
    # A key kept here that the deployment lost (it was reset) is registered as it is.
    kept = load_identity("bob", config_dir=client.settings.config_dir)
    again = await client.signup(identity=kept)
    assert json.loads(api.requests[-1].content)["public_key"] == again.keys[0].public_key
    assert load_identity("bob", config_dir=client.settings.config_dir).key_id == kept.key_id


async def test_unknown_job_and_bad_state(tmp_path: Path) -> None:
    client, _ = fake_client(tmp_path, lambda request: refusal(404, "NotFound", "no job of yours"))
    with pytest.raises(NotFound, match="does not exist"):
        await client.load("job-" + "0" * 32)
    with pytest.raises(BadInput, match="unknown state 'bogus'"):
        await client.list_jobs(state="bogus")
    with pytest.raises(BadInput, match="invalid job uid"):
        await client.load("../etc")


@pytest.mark.parametrize(
    ("status", "error", "kind", "code"),
    [
        (401, "KeyRevoked", Unauthorised, EXIT_REFUSED),
        (401, "SignatureStale", Unauthorised, EXIT_REFUSED),
        (403, "OperatorOnly", Refused, EXIT_REFUSED),
        (404, "NotFound", NotFound, EXIT_NOT_FOUND),
        (409, "InsufficientFunds", Refused, EXIT_REFUSED),
        (409, "WrongState", Refused, EXIT_REFUSED),
        (409, "UnknownCalculation", BadInput, EXIT_BAD_INPUT),
        (409, "BadParameters", BadInput, EXIT_BAD_INPUT),
        (409, "UnknownAccount", NotFound, EXIT_NOT_FOUND),
        (410, "Expired", Refused, EXIT_REFUSED),
        (413, "TooLarge", BadInput, EXIT_BAD_INPUT),
        (422, "InvalidRequest", BadInput, EXIT_BAD_INPUT),
        (429, "TooManyRequests", Refused, EXIT_REFUSED),
        (503, "Unavailable", Unavailable, EXIT_UNAVAILABLE),
        (504, "Timeout", Unavailable, EXIT_UNAVAILABLE),
        (500, "InternalError", JobsheetError, EXIT_FAILURE),
    ],
)
def test_refusals_map_to_sdk_errors_and_exit_codes(
    status: int, error: str, kind: type[JobsheetError], code: int
) -> None:
    mapped = error_for(status, ApiError(error=error, message="because"), what="doing it")
    assert type(mapped) is kind
    assert mapped.reason == error and "because" in mapped.message
    assert exit_code_for(mapped) == code


async def test_a_cancel_whose_answer_was_lost_is_sent_again_unchanged(tmp_path: Path) -> None:
    uid = "job-" + "c" * 32
    sheet = {
        "uid": uid,
        "state": "cancelled",
        "timeline": [{"state": "cancelled", "at": "2026-01-01T00:00:00Z", "note": "no"}],
    }
    posts: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        posts.append(1)
        if len(posts) == 1:
            raise httpx.ReadTimeout("no answer")
        # The API answers a cancelled job's sheet again.
        return ok(sheet)

    client, api = fake_client(tmp_path, answer)
    final = await client.job(uid).cancel("no")
    assert final.state == JobState.CANCELLED
    assert len(api.requests) == 2
    assert api.requests[0].content == api.requests[1].content
    assert json.loads(api.requests[0].content)["authorisation"]["resource"] == f"cancel:{uid}"
