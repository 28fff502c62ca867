"""The image and compose give calculations a user of their own (no Docker engine here: the files
are read as a user would, and the compose file is checked against the compose schema by
test_compose.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_image_has_a_calculation_user_and_runs_as_jobsheet_by_default() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "useradd --system --no-create-home" in dockerfile and "jobsheet-calc" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users == ["jobsheet"]


def test_compose_starts_the_worker_as_root_with_only_what_switching_users_needs() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker, api = services["worker"], services["api"]
    assert worker["user"] == "root"
    assert worker["cap_drop"] == ["ALL"]
    assert set(worker["cap_add"]) == {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"}
    assert "no-new-privileges:true" in worker["security_opt"]
    # The API keeps the image's unprivileged user.
    assert "user" not in api
