"""Run PAR tests: a whole deployment (tests/jobs/conftest.py) behind a real PAR gateway.

The gateway here allows more calls than the product default, so that a test making several
refused calls for one job is not cut short by the rate limit; test_rate_limit.py starts its
own gateway with tight limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.client import Client

from jobsheet.core.settings import Settings
from tests.api_server import ApiServer, start_api
from tests.jobs.conftest import Deployment, deployment

GENEROUS_LIMITS = {"run_par_burst": 100, "run_par_client_burst": 1000}


@pytest.fixture
def gateway(queued_settings: Settings) -> Iterator[ApiServer]:
    server = start_api(queued_settings.model_copy(update=GENEROUS_LIMITS))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def deployed(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    async with deployment(client, job_settings) as env:
        yield env


@pytest.fixture
async def short_expiry(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    """A deployment whose jobs expire four seconds after submission."""
    async with deployment(client, job_settings.model_copy(update={"job_expiry_seconds": 4})) as env:
        yield env
