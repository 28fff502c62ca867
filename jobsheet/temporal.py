"""Connect to Temporal with the pydantic data converter, from settings."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from jobsheet.settings import Settings


async def connect(settings: Settings) -> Client:
    """A Temporal client for ``settings``, converting pydantic models on every boundary."""
    config = settings.temporal_connect_config()
    return await Client.connect(data_converter=pydantic_data_converter, **config)
