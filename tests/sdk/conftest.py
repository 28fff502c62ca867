"""An in-process deployment and an SDK client for one test, as a user of the SDK would have."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client as TemporalClient

from jobsheet.identity import save_identity
from jobsheet.sdk import Client
from jobsheet.settings import Settings
from tests.jobs.conftest import Deployment, deployment


@dataclass
class SdkEnv:
    """The deployment behind the test and the SDK client a user would hold."""

    deployment: Deployment
    sdk: Client
    settings: Settings

    @property
    def account(self) -> str:
        return self.deployment.payer


def sdk_settings(env: Deployment, config_dir: Path) -> Settings:
    """The deployment's settings for its user, whose key is saved in ``config_dir``."""
    save_identity(env.user, config_dir=config_dir)
    return env.settings.model_copy(update={"config_dir": config_dir, "user": env.user.name})


@pytest.fixture
async def sdk_env(
    client: TemporalClient, job_settings: Settings, tmp_path: Path
) -> AsyncIterator[SdkEnv]:
    async with deployment(client, job_settings) as env:
        settings = sdk_settings(env, tmp_path / "config")
        yield SdkEnv(env, Client(client, settings, env.user), settings)
