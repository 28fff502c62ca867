"""Run PAR throttling by caller: wrong tokens count against their address, never against the
job, so a stranger's wrong calls cannot lock the owner out; too many get 429 with Retry-After.

A second address on this machine is 127.0.0.2 (every 127.0.0.0/8 address is loopback): the
tests call from it as the stranger.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobState, ParKind
from tests.api.conftest import Deployment
from tests.api_server import ApiServer, start_api

STRICT = {
    "run_par_burst": 2,
    "run_par_per_minute": 0.01,
    "run_par_client_burst": 4,
    "run_par_client_per_minute": 0.01,
}
DATA = b"mine to run\n" * 10


@pytest.fixture
def gateway(queued_settings: Settings) -> Iterator[ApiServer]:
    """The API with tight limits: 4 failed calls per address, 2 right-token calls per job."""
    server = start_api(queued_settings.model_copy(update=STRICT))
    try:
        yield server
    finally:
        server.stop()


def from_address(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=60, transport=httpx.AsyncHTTPTransport(local_address=address))


def run_url(gateway_url: str, uid: str) -> str:
    return f"{gateway_url}/par/run/{uid}/{secrets.token_urlsafe(32)}"


async def run_token_recorded(env: Deployment, uid: str) -> None:
    """Wait until the job's sheet records its run token's digest (awaiting its upload)."""
    sheet = await env.wait_for(uid, JobState.AWAITING_UPLOAD)
    assert any(par.kind == ParKind.RUN and par.token_sha256 for par in sheet.pars)


async def test_wrong_tokens_never_lock_the_owner_out(deployed: Deployment) -> None:
    env = deployed
    submitted = await env.submit(env.request(DATA))
    base = submitted.run_url.split("/par/run/")[0]
    await run_token_recorded(env, submitted.uid)
    async with from_address("127.0.0.1") as here, from_address("127.0.0.2") as stranger:
        assert (await here.put(submitted.upload_url, content=DATA)).status_code == 200
        # Many wrong tokens on the job's uid from the owner's own address: the first few are
        # told "no such run PAR", then the address is throttled...
        answers = [(await here.post(run_url(base, submitted.uid))) for _ in range(10)]
        assert [a.status_code for a in answers] == [404] * 4 + [429] * 6
        assert "from this address" in answers[-1].json()["message"]
        assert int(answers[-1].headers["retry-after"]) >= 1
        # ...and so is a stranger calling from elsewhere, on its own account.
        strange = [(await stranger.post(run_url(base, submitted.uid))) for _ in range(6)]
        assert [a.status_code for a in strange] == [404] * 4 + [429] * 2

        # The owner's right token is never refused for those wrong calls, whoever made them.
        started = await here.post(submitted.run_url)
        assert started.status_code == 202, started.text
        assert started.json()["started"] is True

        # Right-token calls are limited per job (2 here), and only they count there.
        again = await stranger.post(submitted.run_url)
        assert again.status_code == 409, again.text
        assert again.json()["error"] in ("AlreadyTriggered", "WrongState")  # running, or ended
        limited = await stranger.post(submitted.run_url)
        assert limited.status_code == 429
        assert "for this job" in limited.json()["message"]


async def test_unknown_jobs_count_against_the_caller_only(gateway: ApiServer) -> None:
    async with from_address("127.0.0.1") as here, from_address("127.0.0.2") as stranger:
        guesses = [
            (await here.post(run_url(gateway.url, "job-" + secrets.token_hex(16))))
            for _ in range(5)
        ]
        assert [g.status_code for g in guesses] == [404] * 4 + [429]
        assert guesses[-1].json()["error"] == "TooManyRequests"
        assert "from this address" in guesses[-1].json()["message"]
        malformed = await here.post(f"{gateway.url}/par/run/not-a-job/{'x' * 43}")
        assert malformed.status_code == 429
        # Another address has its own allowance.
        other = await stranger.post(run_url(gateway.url, "job-" + secrets.token_hex(16)))
        assert other.status_code == 404
