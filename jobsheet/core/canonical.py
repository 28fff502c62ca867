"""Canonical encodings for signing and fingerprints: the same value always gives the same bytes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only; pydantic models in their JSON form."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def fingerprint(value: Any) -> str:
    """``sha256:<hex>`` of the canonical encoding: the resource a signature or cheque is bound to."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: a signed time has one spelling, whatever zone its signer wrote it in."""
    return value.astimezone(UTC)


def as_utc_or_none(value: datetime | None) -> datetime | None:
    """:func:`as_utc` for an optional time (an unsigned order has no ``signed_at``)."""
    return None if value is None else as_utc(value)
