"""Two API replicas behind one public URL answer alike: nothing lives in either process.

A load balancer is played by sending each request, signed for the public URL, to whichever
replica the test picks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.messages import cancel_resource
from tests.api.conftest import Deployment
from tests.api.signed import Signed
from tests.api.test_ownership import submit_body
from tests.api_server import ApiServer, start_api


@pytest.fixture
def second_replica(gateway: ApiServer) -> Iterator[ApiServer]:
    replica = start_api(gateway.settings, public_url=gateway.settings.api_url)
    try:
        yield replica
    finally:
        replica.stop()


def to(replica: ApiServer) -> Callable[[httpx.Request], httpx.Request]:
    """Route a signed request to ``replica``, as a balancer would (the signed URL is unchanged)."""

    def route(request: httpx.Request) -> httpx.Request:
        target = request.url.copy_with(port=replica.port)
        return httpx.Request(
            request.method, target, headers=request.headers, content=request.content
        )

    return route


async def test_a_job_submitted_on_one_replica_is_read_and_cancelled_on_another(
    deployed: Deployment, gateway: ApiServer, second_replica: ApiServer
) -> None:
    alice = Signed(deployed.settings.api_url, deployed.user)
    body = submit_body(deployed, deployed.user, account=deployed.payer, user=deployed.user.name)
    first = await alice.post("/v1/jobs", body, tamper=to(second_replica))
    assert first.status_code == 201, first.text
    uid = first.json()["uid"]
    again = await alice.post("/v1/jobs", body, tamper=to(gateway))
    assert again.json() == first.json()

    read = await alice.get(f"/v1/jobs/{uid}", tamper=to(gateway))
    assert read.status_code == 200 and read.json()["state"] == "awaiting_upload"
    cancel = {
        "authorisation": sign_authorisation(deployed.user, cancel_resource(uid)).model_dump(
            mode="json"
        ),
        "reason": "changed my mind",
    }
    cancelled = await alice.post(f"/v1/jobs/{uid}/cancel", cancel, tamper=to(second_replica))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    retried = await alice.post(f"/v1/jobs/{uid}/cancel", cancel, tamper=to(gateway))
    assert retried.status_code == 200 and retried.json()["state"] == "cancelled"

    key = uuid.uuid4().hex
    opened = await alice.post(
        "/v1/accounts", {}, headers={"Idempotency-Key": key}, tamper=to(gateway)
    )
    assert opened.status_code == 201, opened.text
    reopened = await alice.post(
        "/v1/accounts", {}, headers={"Idempotency-Key": key}, tamper=to(second_replica)
    )
    assert reopened.status_code == 200
    assert reopened.json()["account"] == opened.json()["account"]
