"""Users' registered keys, cached per worker for a second, one registry lookup at a time."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client

from jobsheet.identity import registry
from jobsheet.identity.keys import PublicKeyRecord

KEYS_TTL_SECONDS = 1.0


class UserKeys:
    """Users' registered keys, asked of the registry at most once per user per ``ttl`` seconds
    (concurrent misses for one user wait for the one lookup), so a revocation takes effect
    within ``ttl``."""

    def __init__(self, client: Client, ttl: float = KEYS_TTL_SECONDS) -> None:
        self._client, self._ttl = client, ttl
        self._known: dict[str, tuple[float, list[PublicKeyRecord]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def of(self, user: str) -> list[PublicKeyRecord]:
        async with self._locks.setdefault(user, asyncio.Lock()):
            cached = self._known.get(user)
            if cached is not None and time.monotonic() - cached[0] < self._ttl:
                return cached[1]
            keys = await registry.user_keys(self._client, user)
            self._known[user] = (time.monotonic(), keys)
            return keys
