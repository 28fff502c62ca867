"""worker.py as users run it: a real process that serves its role and stops gracefully."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from jobsheet.core.settings import Settings
from jobsheet.ops.services import settings_env
from workflows.smoke import SmokeInput, SmokeWorkflow

ROOT = Path(__file__).resolve().parent.parent


def worker_env(settings: Settings) -> dict[str, str]:
    """The test's settings, with a jobs task queue of its own, as a worker's environment."""
    return settings_env(
        settings.model_copy(update={"task_queue_jobs": f"jobs-{uuid.uuid4().hex[:8]}"})
    )


@pytest.fixture
def worker_process(settings: Settings) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = worker_env(settings)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), "--role", "jobs"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_worker_serves_jobs_and_stops_on_sigterm(
    worker_process: tuple[subprocess.Popen[str], dict[str, str]], client: Client, settings: Settings
) -> None:
    proc, env = worker_process
    assert proc.stdout is not None
    ready = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
    assert ready.startswith("worker ready: role=jobs"), ready
    result = await client.execute_workflow(
        SmokeWorkflow.run,
        SmokeInput(bucket=settings.bucket, message="via worker.py"),
        id=f"smoke-{uuid.uuid4()}",
        task_queue=env["JOBSHEET_TASK_QUEUE_JOBS"],
    )
    assert result.read_back == "via worker.py"
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 60)
    assert code == 0, proc.stdout.read()


def test_unknown_role_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "worker.py"), "--role", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr
