"""The bucket-write PAR: a signed capability to write objects under one job's output prefix.

S3 presigned PUTs name a single key and not every S3 server has POST-policy uploads, so the
compute side gets a *capability* instead: ``wp1.<payload>.<mac>``, where the payload is the
canonical JSON of (job uid, output prefix, expiry) in URL-safe base64 and the MAC is
HMAC-SHA256 under the PAR signing key. The public API checks the MAC and expiry, checks each
requested key lies inside the prefix, checks the job is still running (the sheet its workflow
persisted), and answers with a presigned PUT for that one key, valid for at most the capability's
``url_seconds``. Whoever holds the capability holds no storage credentials and can write nowhere
else, and nothing at all once the job has left ``running``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from jobsheet.core.canonical import canonical_json
from jobsheet.core.settings import Settings

TOKEN_VERSION = "wp1"
_DOMAIN = b"jobsheet:bucket-write-par:v1:"
MAX_KEY_BYTES = 900
MAX_URL_SECONDS = 15 * 60
"""The longest a presigned PUT granted for a bucket-write PAR may live."""


class WriteParError(Exception):
    """A refused bucket-write capability or key; ``status`` is the HTTP status the API uses."""

    status = 403


class MalformedWritePar(WriteParError):
    """Not a bucket-write capability at all."""

    status = 404


class ForgedWritePar(WriteParError):
    """The signature does not match: tampered with, or signed with another key."""

    status = 403


class ExpiredWritePar(WriteParError):
    """The capability was genuine but its time is up."""

    status = 410


class BadOutputKey(WriteParError):
    """A key that is not a plain relative path inside the prefix."""

    status = 400


class JobNotRunning(WriteParError):
    """The capability is genuine, but its job is not running (any more): it writes nothing."""

    status = 410


class WriteCapability(BaseModel):
    """What a bucket-write capability grants: writes under ``prefix`` until ``expires_at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_uid: str = Field(min_length=1)
    prefix: str
    expires_at: int
    """Unix seconds."""
    url_seconds: int = Field(default=MAX_URL_SECONDS, ge=1, le=MAX_URL_SECONDS)
    """The longest a presigned PUT granted for it lives, so that the job knows when the last
    one it granted has expired (capabilities signed before this field: the maximum)."""

    def expiry(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)


class WritePar(BaseModel):
    """The bucket-write PAR as handed to a compute service: where to exchange it, and its scope.

    ``url`` embeds the capability and is the secret; ``prefix`` and ``expires_at`` are metadata
    that may be recorded on the job sheet.
    """

    model_config = ConfigDict(frozen=True)

    url: str
    job_uid: str
    prefix: str
    expires_at: AwareDatetime


def check_prefix(prefix: str) -> str:
    """An output prefix must be a relative key path ending in ``/``."""
    if not prefix.endswith("/") or prefix == "/":
        raise BadOutputKey(f"an output prefix must end with '/': {prefix!r}")
    check_relative_key(prefix.rstrip("/"))
    return prefix


def check_relative_key(key: str) -> str:
    """``key`` unchanged if it is a plain relative path; otherwise BadOutputKey says why."""
    if not key:
        raise BadOutputKey("an output key must not be empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise BadOutputKey("an output key must not contain control characters")
    if "\\" in key:
        raise BadOutputKey("an output key must not contain backslashes")
    if key.startswith("/"):
        raise BadOutputKey("an output key must be relative, not absolute")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise BadOutputKey(f"an output key must not contain empty, '.' or '..' parts: {key!r}")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise BadOutputKey(f"an output key must be at most {MAX_KEY_BYTES} bytes")
    return key


def key_inside_prefix(capability: WriteCapability, relative_key: str) -> str:
    """The full object key for ``relative_key`` under the capability's prefix, after checks."""
    return capability.prefix + check_relative_key(relative_key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, _DOMAIN + payload.encode(), hashlib.sha256).digest())


def sign_write_capability(key: bytes, capability: WriteCapability) -> str:
    """The capability as a token string (safe in a URL path segment)."""
    check_prefix(capability.prefix)
    payload = _b64(canonical_json(capability))
    return f"{TOKEN_VERSION}.{payload}.{_mac(key, payload)}"


def verify_write_token(key: bytes, token: str, *, now: datetime) -> WriteCapability:
    """The capability a genuine, unexpired token grants; raises a WriteParError otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise MalformedWritePar("not a bucket-write PAR")
    _, payload, mac = parts
    if not hmac.compare_digest(_mac(key, payload), mac):
        raise ForgedWritePar("the bucket-write PAR's signature is not valid")
    try:
        capability = WriteCapability.model_validate(json.loads(_unb64(payload)))
    except (binascii.Error, ValueError, ValidationError):
        raise MalformedWritePar("the bucket-write PAR's payload is unreadable") from None
    if now.timestamp() >= capability.expires_at:
        raise ExpiredWritePar(f"the bucket-write PAR expired at {capability.expiry().isoformat()}")
    return capability


def write_par_path(token: str) -> str:
    """The API route that exchanges ``token`` for presigned PUTs."""
    return f"/par/write/{token}"


def issue_write_par(
    settings: Settings,
    *,
    job_uid: str,
    prefix: str,
    expires_at: datetime,
    url_seconds: int = MAX_URL_SECONDS,
) -> WritePar:
    """Sign a bucket-write PAR for ``prefix`` until ``expires_at`` (needs only the PAR key);
    each presigned PUT granted for it lives at most ``url_seconds``."""
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    capability = WriteCapability(
        job_uid=job_uid,
        prefix=check_prefix(prefix),
        expires_at=int(expires_at.timestamp()),
        url_seconds=url_seconds,
    )
    token = sign_write_capability(settings.par_signing_key(), capability)
    return WritePar(
        url=settings.api_compute_url_resolved + write_par_path(token),
        job_uid=job_uid,
        prefix=prefix,
        expires_at=capability.expiry(),
    )
