"""Ed25519 identities: a user's key pair on disk (0600) and the public key records the service keeps.

A key is named by its ``key_id`` (a hash of the public key). The service's registry holds one
:class:`PublicKeyRecord` per key with the times it may sign for: rotation closes the old key
(``valid_until``) so its earlier signatures stay verifiable, revocation (``revoked_at``) makes it
sign nothing dated from then on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel

from jobsheet.core.names import InvalidName, check_name


class IdentityError(ValueError):
    """A user name or key file that cannot be used."""


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name (see :mod:`jobsheet.core.names`)."""
    try:
        return check_name(name, what="user name")
    except InvalidName as exc:
        raise IdentityError(str(exc)) from None


def default_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/jobsheet`` or ``~/.config/jobsheet``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jobsheet"


def keys_dir(config_dir: Path | None = None) -> Path:
    """Where private keys live: ``<config dir>/keys``."""
    return (config_dir or default_config_dir()) / "keys"


PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def strict_b64decode(text: str, *, size: int | None = None, what: str = "the value") -> bytes:
    """The bytes ``text`` spells, if it is their one canonical base64 spelling.

    Python's decoder is lenient: it ignores the padding bits of the last character and, unless
    told to validate, skips whitespace and junk, so one signature has many spellings. Anything
    derived from a signature's text (a job uid, an idempotency key) would then differ between
    spellings, so every signature and key is decoded here: standard alphabet, padded, no
    whitespace, and re-encoding must give ``text`` back. ``size`` is the exact length in bytes.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError(f"{what} is not base64") from None
    if b64(raw) != text:
        raise ValueError(f"{what} is not in canonical base64 (one spelling per value)")
    if size is not None and len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, not {len(raw)}")
    return raw


def signature_bytes(signature: str) -> bytes:
    """The 64 raw bytes of an Ed25519 signature in canonical base64 (else ValueError)."""
    return strict_b64decode(signature, size=SIGNATURE_BYTES, what="the signature")


def check_signature_text(signature: str) -> str:
    """A pydantic validator: ``signature`` empty (not signed yet) or canonical base64 of 64
    bytes."""
    if signature:
        signature_bytes(signature)
    return signature


def key_id_for(public_raw: bytes) -> str:
    """A short stable name for a public key."""
    return "ed25519:" + hashlib.sha256(public_raw).hexdigest()[:32]


class PublicKeyRecord(BaseModel):
    """A registered public key and the period in which it may sign."""

    key_id: str
    public_key: str
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None

    def may_sign_at(self, signed_at: datetime) -> bool:
        """Whether a signature dated ``signed_at`` falls in this key's signing period."""
        if signed_at < self.valid_from:
            return False
        if self.valid_until is not None and signed_at >= self.valid_until:
            return False
        return self.revoked_at is None or signed_at < self.revoked_at

    def verifies(self, message: bytes, signature: str) -> bool:
        """Whether ``signature`` (canonical base64) is this key's signature of ``message``.

        A signature or key in any other spelling of the same bytes does not verify.
        """
        try:
            raw_key = strict_b64decode(self.public_key, size=PUBLIC_KEY_BYTES, what="the key")
            public = Ed25519PublicKey.from_public_bytes(raw_key)
            public.verify(signature_bytes(signature), message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Identity:
    """A user's private key, loaded from the config directory."""

    name: str
    private_key: Ed25519PrivateKey
    created_at: datetime

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return key_id_for(self.public_raw)

    def sign(self, message: bytes) -> str:
        """The base64 Ed25519 signature of ``message``."""
        return b64(self.private_key.sign(message))

    def public_record(self, *, valid_from: datetime | None = None) -> PublicKeyRecord:
        """The record the service registers for this key."""
        return PublicKeyRecord(
            key_id=self.key_id,
            public_key=b64(self.public_raw),
            valid_from=valid_from or self.created_at,
        )


def generate_identity(name: str, *, now: datetime | None = None) -> Identity:
    """A fresh key pair for ``name``, in memory only."""
    return Identity(check_user_name(name), Ed25519PrivateKey.generate(), now or datetime.now(UTC))


def key_path(name: str, config_dir: Path | None = None) -> Path:
    return keys_dir(config_dir) / f"{check_user_name(name)}.json"


def save_identity(identity: Identity, *, config_dir: Path | None = None) -> Path:
    """Write the private key to ``keys/<name>.json`` with mode 0600; keep any older key beside it."""
    path = key_path(identity.name, config_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    raw = identity.private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    body = json.dumps(
        {
            "name": identity.name,
            "key_id": identity.key_id,
            "private_key": b64(raw),
            "created_at": identity.created_at.isoformat(),
        },
        indent=2,
    )
    if path.exists():
        old = load_identity(identity.name, config_dir=config_dir)
        os.replace(path, path.with_name(f"{identity.name}.{old.key_id.split(':')[1]}.json"))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def load_identity(name: str, *, config_dir: Path | None = None) -> Identity:
    """The current private key of ``name`` from the config directory."""
    path = key_path(name, config_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise IdentityError(
            f"no key for user {name!r} in {path.parent}; run `jobsheet user create {name}`"
        ) from None
    private = Ed25519PrivateKey.from_private_bytes(
        strict_b64decode(data["private_key"], size=32, what=f"the private key in {path}")
    )
    return Identity(str(data["name"]), private, datetime.fromisoformat(data["created_at"]))


def ensure_identity(name: str, *, config_dir: Path | None = None) -> Identity:
    """``name``'s key from ``config_dir``, generated and saved (0600) the first time."""
    if key_path(name, config_dir).exists():
        return load_identity(name, config_dir=config_dir)
    identity = generate_identity(name)
    save_identity(identity, config_dir=config_dir)
    return identity
