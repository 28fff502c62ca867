"""The bucket-write PAR: signed capability, key checks, and the gateway's exchange route (which
honours a capability only while its job's persisted sheet says running)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from minio import Minio

from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.jobs.store import write_sheet
from jobsheet.pars.write import (
    BadOutputKey,
    ExpiredWritePar,
    ForgedWritePar,
    MalformedWritePar,
    WriteCapability,
    check_relative_key,
    issue_write_par,
    sign_write_capability,
    verify_write_token,
)
from tests.api_server import ApiServer

KEY = b"k" * 32
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def capability(**changes: object) -> WriteCapability:
    base = {"job_uid": "job-1", "prefix": "jobs/job-1/outputs/", "expires_at": 1_900_000_000}
    return WriteCapability.model_validate({**base, **changes})


def test_a_genuine_token_verifies() -> None:
    token = sign_write_capability(KEY, capability())
    assert verify_write_token(KEY, token, now=NOW) == capability()


@pytest.mark.parametrize(
    "key", ["", "../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\b", "a\nb", "a\x00b", "a/"]
)
def test_keys_outside_a_plain_relative_path_are_refused(key: str) -> None:
    with pytest.raises(BadOutputKey):
        check_relative_key(key)


def test_a_token_with_another_prefix_is_forged() -> None:
    token = sign_write_capability(KEY, capability())
    version, _, mac = token.split(".")
    other = json.dumps(
        {"job_uid": "job-2", "prefix": "jobs/job-2/outputs/", "expires_at": 1_900_000_000}
    ).encode()
    payload = base64.urlsafe_b64encode(other).rstrip(b"=").decode()
    with pytest.raises(ForgedWritePar):
        verify_write_token(KEY, f"{version}.{payload}.{mac}", now=NOW)


def test_a_token_signed_with_another_key_is_forged() -> None:
    token = sign_write_capability(b"other" * 8, capability())
    with pytest.raises(ForgedWritePar):
        verify_write_token(KEY, token, now=NOW)


def test_an_expired_token_is_refused() -> None:
    token = sign_write_capability(KEY, capability(expires_at=int(NOW.timestamp())))
    with pytest.raises(ExpiredWritePar):
        verify_write_token(KEY, token, now=NOW)


@pytest.mark.parametrize("token", ["", "wp1", "wp2.a.b", "wp1.a.b.c", "nonsense"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(MalformedWritePar):
        verify_write_token(KEY, token, now=NOW)


# --- through the gateway, against the real S3 server ---------------------------------------


def exchange(url: str, key: object) -> httpx.Response:
    return httpx.post(url, json={"key": key}, timeout=10)


def par_for(
    settings: Settings,
    job: str,
    expires_in: timedelta = timedelta(minutes=5),
    *,
    state: JobState | None = JobState.RUNNING,
    url_seconds: int = 15 * 60,
) -> str:
    """A bucket-write PAR for ``job``, whose persisted sheet says ``state`` (None: no sheet)."""
    if state is not None:
        write_sheet(internal_client(settings), settings.bucket, JobSheet(uid=job, state=state))
    return issue_write_par(
        settings,
        job_uid=job,
        prefix=f"jobs/{job}/outputs/",
        expires_at=datetime.now(UTC) + expires_in,
        url_seconds=url_seconds,
    ).url


def test_the_gateway_grants_a_presigned_put_inside_the_prefix(
    gateway: ApiServer, s3: Minio
) -> None:
    settings = gateway.settings
    url = par_for(settings, "job-a")
    assert url.startswith(gateway.url + "/par/write/")
    response = exchange(url, "dir/result.txt")
    assert response.status_code == 200, response.text
    grant = response.json()
    assert grant["key"] == "jobs/job-a/outputs/dir/result.txt"
    assert datetime.fromisoformat(grant["expires_at"]) <= datetime.now(UTC) + timedelta(minutes=5)
    put = httpx.put(grant["url"], content=b"output bytes", timeout=10)
    assert put.status_code == 200, put.text
    stored = s3.get_object(settings.bucket, grant["key"])
    try:
        assert stored.read() == b"output bytes"
    finally:
        stored.close()
        stored.release_conn()
    # The presigned URL names that one key: using it for another key is refused by S3.
    other = grant["url"].replace("dir/result.txt", "dir/other.txt")
    assert httpx.put(other, content=b"x", timeout=10).status_code == 403


@pytest.mark.parametrize(
    "key",
    ["../../job-b/outputs/x", "../x", "/jobs/job-b/outputs/x", "", "a\\b", "a/./b", 7, None],
)
def test_the_gateway_refuses_keys_outside_the_prefix(gateway: ApiServer, key: object) -> None:
    response = exchange(par_for(gateway.settings, "job-a"), key)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "BadOutputKey"


def test_the_gateway_refuses_another_jobs_prefix_by_signature(gateway: ApiServer) -> None:
    url = par_for(gateway.settings, "job-a")
    base, token = url.rsplit("/", 1)
    version, _, mac = token.split(".")
    forged = WriteCapability(job_uid="job-b", prefix="jobs/job-b/outputs/", expires_at=2**31)
    payload = base64.urlsafe_b64encode(forged.model_dump_json().encode()).rstrip(b"=").decode()
    response = exchange(f"{base}/{version}.{payload}.{mac}", "x")
    assert response.status_code == 403
    assert response.json()["error"] == "ForgedWritePar"


def test_the_gateway_refuses_an_expired_par(gateway: ApiServer) -> None:
    url = par_for(gateway.settings, "job-a", expires_in=-timedelta(seconds=1))
    response = exchange(url, "x")
    assert response.status_code == 410
    assert response.json()["error"] == "ExpiredWritePar"


def test_the_gateway_refuses_garbage(gateway: ApiServer) -> None:
    assert exchange(f"{gateway.url}/par/write/{uuid.uuid4().hex}", "x").status_code == 404
    url = par_for(gateway.settings, "job-a")
    assert httpx.post(url, content=b"not json", timeout=10).status_code == 400


def test_a_capability_grants_nothing_unless_its_job_is_running(
    gateway: ApiServer, s3: Minio
) -> None:
    settings = gateway.settings
    url = par_for(settings, "job-c")
    assert exchange(url, "early.txt").status_code == 200
    for state in (
        JobState.SETTLING,
        JobState.SUCCEEDED,
        JobState.EXPIRED,
        JobState.AWAITING_UPLOAD,
    ):
        write_sheet(s3, settings.bucket, JobSheet(uid="job-c", state=state))
        started = time.monotonic()
        refused = exchange(url, "late.txt")
        assert time.monotonic() - started < 1.0
        assert refused.status_code == 410, (state, refused.text)
        assert refused.json()["error"] == "JobNotRunning"
        assert state.value in refused.json()["message"]
    # A job nobody ever persisted (never submitted, or its sheet is gone) grants nothing either.
    unknown = exchange(par_for(settings, "job-d", state=None), "x.txt")
    assert unknown.status_code == 410 and unknown.json()["error"] == "JobNotRunning"
    assert list(s3.list_objects(settings.bucket, prefix="jobs/job-c/outputs/late")) == []


def test_a_granted_put_lives_at_most_the_capabilitys_url_seconds(gateway: ApiServer) -> None:
    url = par_for(gateway.settings, "job-e", url_seconds=7)
    grant = exchange(url, "short.txt").json()
    lifetime = datetime.fromisoformat(grant["expires_at"]) - datetime.now(UTC)
    assert lifetime <= timedelta(seconds=7)
    assert "X-Amz-Expires=7" in grant["url"]


def test_a_capability_signed_before_url_seconds_existed_gets_the_maximum() -> None:
    raw = {"expires_at": 1_900_000_000, "job_uid": "job-1", "prefix": "jobs/job-1/outputs/"}
    encoded = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(encoded).rstrip(b"=").decode()
    signed = hmac.new(KEY, b"jobsheet:bucket-write-par:v1:" + payload.encode(), hashlib.sha256)
    mac = base64.urlsafe_b64encode(signed.digest()).rstrip(b"=").decode()
    assert verify_write_token(KEY, f"wp1.{payload}.{mac}", now=NOW).url_seconds == 15 * 60
