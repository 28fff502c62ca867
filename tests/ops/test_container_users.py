"""The image and compose give calculations a user of their own (no Docker engine here: the files
are read as a user would, and the compose file is checked against the compose schema by
test_compose.py)."""

from __future__ import annotations

from tests.ops.deploy.compose_file import ROOT, load, python_services

SWITCH_USERS = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"}


def test_the_image_has_a_calculation_user_and_runs_as_jobsheet_by_default() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "useradd --system --no-create-home" in dockerfile and "jobsheet-calc" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users == ["jobsheet"]


def test_compute_workers_start_as_root_with_only_what_switching_users_needs() -> None:
    services = python_services(load())
    compute = {name: s for name, s in services.items() if name.startswith("compute-")}
    assert compute
    for name, worker in compute.items():
        assert worker["user"] == "root", name
        assert worker["cap_drop"] == ["ALL"], name
        assert set(worker["cap_add"]) == SWITCH_USERS, name
        assert "no-new-privileges:true" in worker["security_opt"], name
    # The API and the jobs and ledger workers run no calculation: they keep the image's
    # unprivileged user and no capability at all.
    for name in set(services) - set(compute):
        assert "user" not in services[name] and "cap_add" not in services[name], name
        assert services[name]["cap_drop"] == ["ALL"], name
