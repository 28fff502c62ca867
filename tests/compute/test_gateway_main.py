"""``python -m jobsheet.api`` serves the PAR gateway on the configured port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from jobsheet.core import processes
from jobsheet.core.settings import Settings
from jobsheet.ops.services import settings_env


@pytest.fixture
def gateway_process(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = processes.free_port()
    env = settings_env(settings.model_copy(update={"api_port": port}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobsheet.api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_gateway_module_serves_health_and_write_pars(
    gateway_process: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = gateway_process
    for _ in range(400):
        assert proc.poll() is None, "the gateway exited"
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        pytest.fail("the gateway never answered")
    assert response.json() == {"ok": True}
    refused = httpx.post(f"http://127.0.0.1:{port}/par/write/nonsense", json={"key": "x"})
    assert refused.status_code == 404
