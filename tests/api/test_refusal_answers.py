"""Every way ``trigger_run`` can answer becomes the documented HTTP answer (no Temporal here).

The paths that depend on timing in a real deployment (the validator's own ``Expired`` between
the deadline and the end of compensation, an expired job whose workflow is still open, a lost
race with another trigger) are driven here by a stand-in for ``trigger_run``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from jobsheet.api import run_routes
from jobsheet.api.app import create_app
from jobsheet.core.settings import Settings
from jobsheet.jobs.messages import TriggerRunResult
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.telemetry.redaction import RedactSecrets, redact_secrets

UID = "job-" + "0" * 32
TOKEN = secrets.token_urlsafe(32)
URL = f"/par/run/{UID}/{TOKEN}"


async def fake_connect(_settings: Settings) -> Client:
    return object()  # type: ignore[return-value]


async def failing_connect(_settings: Settings) -> Client:
    raise RuntimeError("no Temporal here")


def app_with(
    monkeypatch: pytest.MonkeyPatch,
    trigger: Callable[..., Any],
    *,
    sheet_state: JobState = JobState.AWAITING_UPLOAD,
    connector: run_routes.Connect = fake_connect,
) -> httpx.AsyncClient:
    monkeypatch.setattr(run_routes, "trigger_run", trigger)

    async def load_sheet(_client: Client, _settings: Settings, uid: str) -> JobSheet:
        return JobSheet(uid=uid, state=sheet_state, expires_at=datetime(2026, 1, 1, tzinfo=UTC))

    monkeypatch.setattr(run_routes, "load_sheet", load_sheet)
    app = FastAPI()
    app.router.routes.extend(run_routes.RunParRoutes(Settings(), connector=connector).routes())
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


def refused_by_workflow(error_type: str, message: str) -> Callable[..., Any]:
    async def trigger(_client: Client, _uid: str, _token: str) -> TriggerRunResult:
        raise WorkflowUpdateFailedError(ApplicationError(message, type=error_type))

    return trigger


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("WrongToken", 404),
        ("WrongState", 409),
        ("AlreadyTriggered", 409),
        ("Expired", 410),
        ("InputNotReady", 422),
        ("SomethingElse", 500),
    ],
)
async def test_workflow_refusals_map_to_documented_codes(
    monkeypatch: pytest.MonkeyPatch, error_type: str, status: int
) -> None:
    async with app_with(
        monkeypatch, refused_by_workflow(error_type, f"because {error_type}")
    ) as http:
        response = await http.post(URL)
    assert response.status_code == status
    body = response.json()
    if status == 404:
        assert body == {"error": "NotFound", "message": run_routes.NOT_FOUND_MESSAGE}
    elif status == 500:
        assert body["error"] == "InternalError" and "SomethingElse" not in body["message"]
    else:
        assert body == {"error": error_type, "message": f"because {error_type}"}


async def test_an_expired_job_still_open_answers_410(monkeypatch: pytest.MonkeyPatch) -> None:
    trigger = refused_by_workflow("AlreadyTriggered", "the job is already expired")
    async with app_with(monkeypatch, trigger, sheet_state=JobState.EXPIRED) as http:
        response = await http.post(URL)
    assert response.status_code == 410
    assert response.json()["error"] == "Expired"


async def test_a_lost_race_answers_409(monkeypatch: pytest.MonkeyPatch) -> None:
    async def trigger(_client: Client, uid: str, _token: str) -> TriggerRunResult:
        return TriggerRunResult(uid=uid, state=JobState.RUNNING, started=False, message="busy")

    async with app_with(monkeypatch, trigger) as http:
        response = await http.post(URL)
    assert response.status_code == 409
    assert response.json() == {"error": "AlreadyTriggered", "message": "busy"}


async def test_success_is_202_with_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []

    async def trigger(_client: Client, uid: str, token: str) -> TriggerRunResult:
        seen.append((uid, token))
        return TriggerRunResult(uid=uid, state=JobState.RUNNING, started=True, message="go")

    async with app_with(monkeypatch, trigger) as http:
        response = await http.post(URL)
    assert response.status_code == 202
    assert response.json() == {"uid": UID, "state": "running", "started": True, "message": "go"}
    assert seen == [(UID, TOKEN)]


@pytest.mark.parametrize(
    "path",
    [
        f"/par/run/{UID}/{TOKEN[:21]}",  # under 128 bits
        f"/par/run/{UID}/{TOKEN}!",
        f"/par/run/{UID}/{'a' * 129}",
        f"/par/run/job-{'0' * 31}/{TOKEN}",
        f"/par/run/JOB-{'0' * 32}/{TOKEN}",
    ],
)
async def test_malformed_pars_never_reach_temporal(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    async def trigger(*_args: object) -> TriggerRunResult:
        raise AssertionError("a malformed PAR reached Temporal")

    async with app_with(monkeypatch, trigger, connector=failing_connect) as http:
        response = await http.post(path)
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


async def test_temporal_unavailable_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    async with app_with(
        monkeypatch, refused_by_workflow("Expired", "x"), connector=failing_connect
    ) as http:
        response = await http.post(URL)
    assert response.status_code == 503
    assert response.json()["error"] == "Unavailable"


async def test_get_is_405_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    async with app_with(monkeypatch, refused_by_workflow("Expired", "x")) as http:
        response = await http.get(URL)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "curl -X POST" in response.json()["message"]


@pytest.fixture
def access_record() -> Iterator[logging.LogRecord]:
    yield logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5555", "POST", URL, "1.1", 202),
        None,
    )


def test_tokens_never_reach_the_access_log(access_record: logging.LogRecord) -> None:
    assert RedactSecrets().filter(access_record)
    message = access_record.getMessage()
    assert TOKEN not in message
    assert f"/par/run/{UID}/[token]" in message
    assert redact_secrets(f"POST /par/write/{TOKEN}?x=1") == "POST /par/write/[token]?x=1"


async def test_a_refused_call_is_one_info_line_naming_the_job_and_the_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobsheet")
    trigger = refused_by_workflow("InputNotReady", "no input has been uploaded yet")
    async with app_with(monkeypatch, trigger) as http:
        assert (await http.post(URL)).status_code == 422
    [line] = [r for r in caplog.records if r.name == "jobsheet.api"]
    assert line.levelno == logging.INFO and line.exc_info is None
    assert (line.__dict__["job"], line.__dict__["reason"], line.__dict__["status"]) == (
        UID,
        "InputNotReady",
        422,
    )
    assert TOKEN not in line.getMessage() and TOKEN not in str(line.__dict__)


async def test_a_refused_request_is_one_info_line_naming_the_route_and_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jobsheet")
    app = create_app(Settings(), connector=fake_connect)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        answer = await http.get(f"/v1/jobs/{UID}")
    assert answer.status_code == 401
    [line] = [r for r in caplog.records if r.name == "jobsheet.api"]
    assert line.levelno == logging.INFO and line.exc_info is None
    fields = line.__dict__
    assert (fields["route"], fields["job"], fields["status"]) == ("/v1/jobs/{uid}", UID, 401)
    assert fields["reason"] == answer.json()["error"] == "SignatureMissing"
