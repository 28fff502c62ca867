"""An in-process deployment behind the real public API, and an SDK client as a user holds it.

The user's settings name the API, the user and the config dir with their key; Temporal points at
a closed port, no S3 credential is set and the provider account is left at its default (the
payee comes from the API), so a test passes only if the SDK goes through the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client as TemporalClient

from jobsheet.core.settings import Settings
from jobsheet.identity.keys import save_identity
from jobsheet.sdk import Client
from tests.jobs.conftest import Deployment, deployment

CLOSED_TEMPORAL = "127.0.0.1:1"
"""Nothing listens here: a user's process that tried Temporal would fail."""


@dataclass
class SdkEnv:
    """The deployment behind the test and the SDK client a user would hold."""

    deployment: Deployment
    sdk: Client
    settings: Settings

    @property
    def account(self) -> str:
        return self.deployment.payer


def user_settings(env: Deployment, config_dir: Path) -> Settings:
    """What the deployment's user configures: the API, their name and key; nothing of Temporal
    or S3."""
    save_identity(env.user, config_dir=config_dir)
    return Settings(
        api_url=env.settings.api_url,
        user=env.user.name,
        config_dir=config_dir,
        state_dir=config_dir.parent / "user-state",
        temporal_address=CLOSED_TEMPORAL,
    )


@pytest.fixture
async def sdk_env(
    client: TemporalClient, job_settings: Settings, tmp_path: Path
) -> AsyncIterator[SdkEnv]:
    async with deployment(client, job_settings) as env:
        settings = user_settings(env, tmp_path / "config")
        async with Client(settings, env.user) as sdk:
            yield SdkEnv(env, sdk, settings)
