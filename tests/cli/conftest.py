"""The CLI as a user runs it: subprocesses against an in-process deployment behind the real API.

A command's environment names only the API, the user and the config dir (and the state dir,
where an operator's key may be); Temporal points at a closed port and no S3 setting is passed,
so a command passes only if it goes through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client as TemporalClient

from jobsheet.core.settings import Settings
from jobsheet.identity.keys import save_identity
from tests.jobs.conftest import Deployment, deployment
from tests.sdk.conftest import CLOSED_TEMPORAL, user_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error_line(self) -> str:
        """The one readable line a failing command prints on stderr."""
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]


def user_env(settings: Settings) -> dict[str, str]:
    """The environment of a user's shell: the API, who they are, where their key is."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(settings.state_dir),
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        "JOBSHEET_API_URL": settings.api_url,
        "JOBSHEET_CONFIG_DIR": str(settings.config_dir),
        "JOBSHEET_STATE_DIR": str(settings.state_dir),
        "JOBSHEET_TEMPORAL_ADDRESS": CLOSED_TEMPORAL,
    }
    if settings.user:
        env["JOBSHEET_USER"] = settings.user
    return env


@dataclass
class CliEnv:
    deployment: Deployment
    settings: Settings
    cwd: Path

    @property
    def account(self) -> str:
        return self.deployment.payer

    async def run(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        """``python -m jobsheet.cli ARGS`` as this test's user (``env`` adds or overrides).

        Run as an asyncio subprocess: the deployment's workers share this event loop.
        """
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobsheet.cli",
            *args,
            env={**user_env(self.settings), **(env or {})},
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
        assert proc.returncode is not None
        return Outcome(proc.returncode, stdout.decode(), stderr.decode())

    def as_operator(self, config_dir: Path) -> dict[str, str]:
        """The environment additions of the operator's shell: their key in ``config_dir``."""
        operator = self.deployment.operator
        save_identity(operator, config_dir=config_dir)
        return {"JOBSHEET_CONFIG_DIR": str(config_dir), "JOBSHEET_OPERATOR_USER": operator.name}


@contextlib.asynccontextmanager
async def cli_deployment(
    client: TemporalClient, settings: Settings, tmp_path: Path
) -> AsyncIterator[CliEnv]:
    async with deployment(client, settings) as env:
        cwd = tmp_path / "work"
        cwd.mkdir()
        yield CliEnv(env, user_settings(env, tmp_path / "config"), cwd)


@pytest.fixture
async def cli_env(
    client: TemporalClient, job_settings: Settings, tmp_path: Path
) -> AsyncIterator[CliEnv]:
    async with cli_deployment(client, job_settings, tmp_path) as env:
        yield env


@pytest.fixture
async def short_expiry_cli(
    client: TemporalClient, job_settings: Settings, tmp_path: Path
) -> AsyncIterator[CliEnv]:
    """A deployment whose jobs expire ten seconds after submission."""
    settings = job_settings.model_copy(update={"job_expiry_seconds": 10})
    async with cli_deployment(client, settings, tmp_path) as env:
        yield env
