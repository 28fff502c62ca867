"""The CLI as a user runs it: subprocesses against an in-process deployment of this test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client as TemporalClient

from jobsheet.settings import Settings
from jobsheet.stack_services import settings_env
from tests.jobs.conftest import Deployment, deployment
from tests.sdk.conftest import sdk_settings


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


@dataclass
class CliEnv:
    deployment: Deployment
    settings: Settings
    cwd: Path

    @property
    def account(self) -> str:
        return self.deployment.payer

    async def run(self, *args: str) -> Outcome:
        """``python -m jobsheet.cli ARGS`` with JOBSHEET_* pointing at this test's deployment.

        Run as an asyncio subprocess: the deployment's workers share this event loop.
        """
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobsheet.cli",
            *args,
            env=settings_env(self.settings),
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
        assert proc.returncode is not None
        return Outcome(proc.returncode, stdout.decode(), stderr.decode())


@contextlib.asynccontextmanager
async def cli_deployment(
    client: TemporalClient, settings: Settings, tmp_path: Path
) -> AsyncIterator[CliEnv]:
    async with deployment(client, settings) as env:
        cwd = tmp_path / "work"
        cwd.mkdir()
        yield CliEnv(env, sdk_settings(env, tmp_path / "config"), cwd)


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
