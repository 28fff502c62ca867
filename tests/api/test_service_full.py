"""A submission to a full compute service, through the API as a user meets it: refused at once
with 409 ``ServiceAtCapacity`` naming the service and its capacity, its cheque's hold given
back; when a job of that service ends, its slot takes the next submission.

The whole stack runs: the API, the jobs, ledger and compute workers, and the service ``test``
of the test calculations, which holds at most three open contracts (``max_open_contracts``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from temporalio.client import Client

from jobsheet.core.settings import Settings
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.messages import cancel_resource
from jobsheet.jobs.models import JobState, job_uid_for
from jobsheet.ledger.cheque import write_cheque
from tests.api.signed import Signed
from tests.jobs.conftest import TEST_CALCULATIONS, Deployment, deployment

CAPACITY = 3
QUOTE = Decimal("0.35")  # echo: 0.05 + 0.01/s x 30 s


@pytest.fixture
async def small_service(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    settings = job_settings.model_copy(update={"calculations_file": TEST_CALCULATIONS})
    async with deployment(client, settings) as env:
        yield env


def submission(env: Deployment, data: bytes) -> tuple[str, dict]:
    """A job of the echo calculation on the service ``test``: its uid and the API body."""
    request = env.request(data, "echo", service="test")
    resource = request.fingerprint()
    authorisation = sign_authorisation(env.user, resource)
    cheque = write_cheque(
        env.user, account=env.payer, recipient=env.provider, resource=resource, max_spend="1.00"
    )
    body = {
        "request": request.model_dump(mode="json"),
        "authorisation": authorisation.model_dump(mode="json"),
        "cheque": cheque.model_dump(mode="json"),
    }
    return job_uid_for(authorisation.signature), body


async def test_a_full_service_refuses_a_submission_at_once_and_holds_nothing(
    small_service: Deployment,
) -> None:
    env = small_service
    alice = Signed(env.settings.api_url, env.user)
    before = await env.balances()
    held = []
    for n in range(CAPACITY):
        uid, body = submission(env, f"job {n}\n".encode())
        answer = await alice.post("/v1/jobs", body)
        assert answer.status_code == 201, answer.text
        held.append(uid)
    payer, payer_held, _ = await env.balances()
    assert payer_held == CAPACITY * QUOTE

    uid, body = submission(env, b"one too many\n")
    started = time.monotonic()
    refused = await alice.post("/v1/jobs", body)
    elapsed = time.monotonic() - started
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "ServiceAtCapacity"
    message = refused.json()["message"]
    assert "compute service 'test' is full" in message
    assert f"its maximum of {CAPACITY} open contracts" in message
    assert elapsed < 2.0, f"refused after {elapsed:.2f}s"
    rejected = await env.wait_for(uid, JobState.REJECTED)
    assert rejected.contract is None and rejected.pars == []
    assert rejected.costs.held == rejected.costs.refunded  # cashed alongside, then refunded
    assert await env.balances() == (payer, payer_held, before[2])

    # A job of the service ends: its slot takes the next submission at once.
    cancel = {
        "authorisation": sign_authorisation(env.user, cancel_resource(held[0])).model_dump(
            mode="json"
        )
    }
    cancelled = await alice.post(f"/v1/jobs/{held[0]}/cancel", cancel)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == JobState.CANCELLED.value
    _, again = submission(env, b"room again\n")
    assert (await alice.post("/v1/jobs", again)).status_code == 201
