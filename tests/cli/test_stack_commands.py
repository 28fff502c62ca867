"""``jobsheet stack`` for people (tests/ops/test_stack.py reads the same commands with --json)."""

from __future__ import annotations

import json
from pathlib import Path

from jobsheet.cli.errors import EXIT_UNAVAILABLE
from tests.servers import stack_cli, stack_settings

SERVICES = ("temporal", "s3", "worker", "api")


def test_stack_commands_for_people(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    try:
        up = stack_cli(settings, "stack", "up")
        assert up.returncode == 0, up.stderr
        assert f"state in {settings.state_dir}" in up.stdout
        assert f"public API:      {settings.api_url} (docs: {settings.api_url}/docs)" in up.stdout
        status = stack_cli(settings, "stack", "status")
        assert status.returncode == 0, status.stderr
        rows = [line for line in status.stdout.splitlines() if "running" in line]
        assert [row.split()[1] for row in rows] == list(SERVICES)

        logs = stack_cli(settings, "stack", "logs", "api", "-n", "5")
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.startswith("== api (")  # a plain heading when piped

        rotated = stack_cli(settings, "stack", "rotate-payload-key")
        assert rotated.returncode == 0, rotated.stderr
        assert rotated.stdout.startswith("new current payload key: ")
        keys = json.loads(stack_cli(settings, "stack", "rotate-payload-key", "--json").stdout)
        assert len(keys["keys"]) == 3
    finally:
        down = stack_cli(settings, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "stopped: " + ", ".join(reversed(SERVICES))
    again = stack_cli(settings, "stack", "down")
    assert again.returncode == 0 and again.stdout.strip() == "nothing was running"
    stopped = stack_cli(settings, "stack", "status")
    assert stopped.returncode == EXIT_UNAVAILABLE
    assert stopped.stdout.count("stopped") == len(SERVICES)
