"""``make demo`` (``python -m jobsheet.demo``) on a fresh state directory, run twice.

The second run must reuse the stack, the user and the account. The stack is stopped at the end
by ``jobsheet stack down`` (by pid file), whatever happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsheet import processes


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBSHEET_")}
    env.pop("TEMPORAL_ADDRESS", None)
    env.update(
        {
            "JOBSHEET_STATE_DIR": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "JOBSHEET_TEMPORAL_PORT": str(processes.free_port()),
            "JOBSHEET_TEMPORAL_UI_PORT": str(processes.free_port()),
            "JOBSHEET_S3_PORT": str(processes.free_port()),
            "JOBSHEET_API_PORT": str(processes.free_port()),
            "COLUMNS": "200",
        }
    )
    try:
        yield env
    finally:
        subprocess.run(
            [sys.executable, "-m", "jobsheet.cli", "stack", "down"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobsheet.demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


@pytest.mark.timeout(400)
def test_demo_runs_a_paid_job_twice(demo_env: dict[str, str]) -> None:
    first = run_demo(demo_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "user demo registered" in first.stdout
    assert "(matches)" in first.stdout
    for state in ("submitted", "awaiting_upload", "running", "settling", "succeeded"):
        assert state in first.stdout
    ui = f"http://127.0.0.1:{demo_env['JOBSHEET_TEMPORAL_UI_PORT']}/namespaces/default/workflows/job-"
    assert ui in first.stdout

    second = run_demo(demo_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "user demo exists" in second.stdout and "account acct-demo exists" in second.stdout
    assert "already running" in second.stdout
    assert "(matches)" in second.stdout
