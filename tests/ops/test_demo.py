"""``make demo`` (``python -m jobsheet.ops.demo``) on a fresh state directory, run twice.

The second run must reuse the stack, the user and the account; the three commands the first run
ends with ("try next") must run as printed. The stack is stopped at the end by ``jobsheet stack
down`` (by pid file), whatever happened.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsheet.core import processes


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
        [sys.executable, "-m", "jobsheet.ops.demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


def try_next(stdout: str) -> list[str]:
    """The commands the demo ends with, after its "try next" line (indented, one a line)."""
    after = stdout.split("try next:", 1)[1].splitlines()[1:]
    return [line.strip() for line in after if line.startswith("  ")]


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
    found = re.search(r"job (job-[0-9a-f]{32})", first.stdout)
    assert found is not None, first.stdout
    uid = found.group(1)

    # Three commands to try next, each run as printed: the sheet, the list, the Web UI.
    show, listing, browse = try_next(first.stdout)
    assert browse.endswith(f"{ui}{uid.removeprefix('job-')}"), browse
    for command, expected in ((show, [uid, "succeeded"]), (listing, [uid]), (browse, [])):
        # BROWSER: the test has no browser; webbrowser runs this command with the URL instead.
        tried = subprocess.run(
            ["bash", "-c", command],
            env={**demo_env, "BROWSER": "true"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert tried.returncode == 0, f"{command}: {tried.stdout}{tried.stderr}"
        for text in expected:
            assert text in tried.stdout, f"{command}: no {text!r} in {tried.stdout}"

    second = run_demo(demo_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "user demo exists" in second.stdout and "account acct-demo exists" in second.stdout
    assert "already running" in second.stdout
    assert "(matches)" in second.stdout
