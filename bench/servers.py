"""The real servers every benchmark runs on: S3 and the Temporal dev server, on free ports.

    async with bench_servers(root, bucket="bench") as (env, settings):
        ...

``settings`` point at both servers (with the bucket created and a fresh payload key ring the
dev server's client shares); ``encrypted=False`` leaves that client's payloads in clear.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from jobsheet.core import processes
from jobsheet.core.objectstore import ensure_bucket, internal_client
from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.core.settings import Settings
from tests.servers import start_s3_server, start_temporal_dev_server


@contextlib.asynccontextmanager
async def bench_servers(
    root: Path, *, encrypted: bool = True, **overrides: Any
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    """Start S3 and Temporal under ``root``; yield them with settings (``overrides`` applied)."""
    s3_server = start_s3_server(root / "s3")
    try:
        keys = PayloadKeyRing.generate().serialise()
        env = await start_temporal_dev_server(payload_keys=keys if encrypted else None)
        try:
            settings = Settings(
                **{
                    "payload_keys": SecretStr(keys),
                    "state_dir": root / "state",
                    "temporal_address": env.client.service_client.config.target_host,
                    "s3_endpoint": s3_server.endpoint,
                    "s3_access_key": SecretStr(s3_server.access_key),
                    "s3_secret_key": SecretStr(s3_server.secret_key),
                    "bucket": "bench",
                    **overrides,
                }
            )
            ensure_bucket(internal_client(settings), settings.bucket)
            yield env, settings
        finally:
            await env.shutdown()
    finally:
        processes.stop_process(s3_server.record)
