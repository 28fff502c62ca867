"""Canonical encodings for signing and fingerprints: the same value always gives the same bytes."""

from __future__ import annotations

import hashlib
import json
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
