"""A small in-memory token bucket per key, so one caller cannot hammer the API.

It lives in one gateway process; several gateway replicas each keep their own buckets, which is
good enough to stop guessing and accidental loops (the tokens themselves are unguessable). A
caller can be charged only for what it did wrong (:meth:`TokenBuckets.take` after a failure)
and checked before it acts (:meth:`TokenBuckets.peek`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``burst`` calls at once per key, refilled at ``per_minute``; least recently used keys go
    first once more than ``max_keys`` are tracked."""

    def __init__(
        self,
        *,
        burst: int,
        per_minute: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("a token bucket needs burst >= 1 and a positive refill rate")
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return bucket

    def take(self, key: str) -> float:
        """Spend one call for ``key``: 0.0 when allowed, else the seconds until one is allowed."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def peek(self, key: str) -> float:
        """Like :meth:`take` without spending: 0.0 when a call for ``key`` would be allowed."""
        bucket = self._refilled(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate


def retry_after_header(wait: float) -> str:
    """The ``Retry-After`` value (whole seconds, at least 1) for a wait of ``wait`` seconds."""
    return str(max(1, math.ceil(wait)))
