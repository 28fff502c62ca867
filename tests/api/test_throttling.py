"""Too many run PAR calls get 429 with Retry-After, per job and per client address."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from jobsheet.settings import Settings
from tests.api_server import ApiServer, start_api


@pytest.fixture
def strict_gateway(settings: Settings) -> Iterator[ApiServer]:
    limits = {
        "run_par_burst": 2,
        "run_par_per_minute": 0.01,
        "run_par_client_burst": 4,
        "run_par_client_per_minute": 0.01,
    }
    server = start_api(settings.model_copy(update=limits))
    try:
        yield server
    finally:
        server.stop()


def run_url(gateway: ApiServer, uid: str) -> str:
    return f"{gateway.url}/par/run/{uid}/{secrets.token_urlsafe(32)}"


async def test_too_many_calls_get_429(strict_gateway: ApiServer) -> None:
    job = "job-" + secrets.token_hex(16)
    async with httpx.AsyncClient(timeout=60) as http:
        first = [await http.post(run_url(strict_gateway, job)) for _ in range(2)]
        assert [r.status_code for r in first] == [404, 404]
        throttled = await http.post(run_url(strict_gateway, job))
        assert throttled.status_code == 429, throttled.text
        assert throttled.json()["error"] == "TooManyRequests"
        assert "for this job" in throttled.json()["message"]
        assert int(throttled.headers["retry-after"]) >= 1

        # Another job from the same address: allowed until the address's own bucket is empty.
        other = await http.post(run_url(strict_gateway, "job-" + secrets.token_hex(16)))
        assert other.status_code == 404
        by_address = await http.post(run_url(strict_gateway, "job-" + secrets.token_hex(16)))
        assert by_address.status_code == 429
        assert "from this address" in by_address.json()["message"]
        assert int(by_address.headers["retry-after"]) >= 1
