"""Users' registered public keys, as the API checks signatures against them.

The registry is the user's workflow in Temporal; an API process asks it and keeps the answer
for a couple of seconds (``JOBSHEET_API_KEY_CACHE_SECONDS``), and forgets it at once when this
process changes the keys. A revocation made through another replica therefore takes effect
everywhere within that time.
"""

from __future__ import annotations

import time

from temporalio.exceptions import ApplicationError

from jobsheet.api.temporal_clients import TemporalClients
from jobsheet.identity import registry
from jobsheet.identity.keys import PublicKeyRecord
from jobsheet.ledger.errors import UNKNOWN_USER


class KeyDirectory:
    """``keys_of(user)``: the user's key records, or None when no such user is registered."""

    def __init__(self, temporal: TemporalClients, *, ttl: float) -> None:
        self._temporal = temporal
        self._ttl = ttl
        self._cache: dict[str, tuple[float, list[PublicKeyRecord] | None]] = {}

    async def keys_of(self, user: str) -> list[PublicKeyRecord] | None:
        now = time.monotonic()
        cached = self._cache.get(user)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        client = await self._temporal.get()
        try:
            keys: list[PublicKeyRecord] | None = await registry.user_keys(client, user)
        except ApplicationError as exc:
            if exc.type != UNKNOWN_USER:
                raise
            keys = None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[user] = (now, keys)
        return keys

    def forget(self, user: str) -> None:
        """Drop the cached keys of ``user`` (after this process changed them)."""
        self._cache.pop(user, None)
