"""What every route of one API process shares: settings, Temporal, S3 signers and the key cache.

Nothing here is state a second replica would need: the Temporal client and the S3 signers are
connections, the key cache only saves registry queries, and the rate limits are per process.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from minio import Minio
from temporalio.client import Client

from jobsheet.api.keys import KeyDirectory
from jobsheet.api.rate_limit import TokenBuckets
from jobsheet.api.temporal_clients import Connect, TemporalClients
from jobsheet.core.objectstore import internal_client, presign_client
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import connect


@dataclass
class ApiContext:
    settings: Settings
    temporal: TemporalClients
    keys: KeyDirectory
    signups: TokenBuckets
    _s3: Minio | None = None
    _presigner: Minio | None = None

    async def client(self) -> Client:
        return await self.temporal.get()

    @property
    def s3(self) -> Minio:
        """The internal S3 client (reading persisted sheets)."""
        if self._s3 is None:
            self._s3 = internal_client(self.settings)
        return self._s3

    @property
    def presigner(self) -> Minio:
        """Signs download URLs for the public S3 endpoint, offline."""
        if self._presigner is None:
            self._presigner = presign_client(self.settings)
        return self._presigner


def build_context(settings: Settings, *, connector: Connect = connect) -> ApiContext:
    temporal = TemporalClients(settings, connector)
    return ApiContext(
        settings=settings,
        temporal=temporal,
        keys=KeyDirectory(temporal, ttl=settings.api_key_cache_seconds),
        signups=TokenBuckets(burst=settings.signup_burst, per_minute=settings.signup_per_minute),
    )


def context(request: Request) -> ApiContext:
    """The context of the app serving ``request``."""
    found = request.app.state.context
    assert isinstance(found, ApiContext)
    return found
