"""Encrypted Temporal payloads: AES-256-GCM under a key ring, so history reveals nothing.

Every payload a jobsheet client or worker sends is serialised whole (metadata and data) and
sealed with the ring's current key; the result names that key in its metadata::

    encoding: binary/encrypted
    encryption-key-id: <id>
    data: 12-byte nonce || ciphertext || 16-byte tag

Any key on the ring opens a payload it sealed, so rotating adds a key in front and keeps the
old ones. A payload without that encoding (recorded before encryption, or a search attribute)
decodes unchanged. The ring is written ``id:base64key,id:base64key`` (first is current), in
``JOBSHEET_PAYLOAD_KEYS`` or the stack's 0600 file.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError, Message
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
RELOAD_INTERVAL_SECONDS = 1.0
"""How often a file-backed ring looks at its file for a rotation, at most."""


class PayloadKeyError(ValueError):
    """A key ring that cannot be read, or a payload that no key on the ring opens."""


@dataclass(frozen=True)
class PayloadKey:
    """One AES-256 key and the id payloads name it by."""

    key_id: str
    secret: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not KEY_ID_PATTERN.match(self.key_id):
            raise PayloadKeyError(
                f"a payload key id is 1 to 64 of [A-Za-z0-9._-], not {self.key_id!r}"
            )
        if len(self.secret) != KEY_BYTES:
            raise PayloadKeyError(f"payload key {self.key_id} is not {KEY_BYTES} bytes")
        object.__setattr__(self, "_aead", AESGCM(self.secret))

    @classmethod
    def generate(cls, *, now: datetime | None = None) -> PayloadKey:
        """A fresh random key, its id naming the day it was made (``key-YYYYMMDD-<hex>``)."""
        day = (now or datetime.now(UTC)).strftime("%Y%m%d")
        return cls(f"key-{day}-{secrets.token_hex(4)}", secrets.token_bytes(KEY_BYTES))

    def entry(self) -> str:
        """``id:base64key``, as rings are written."""
        return f"{self.key_id}:{base64.b64encode(self.secret).decode()}"

    def seal(self, plain: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, self._aad())

    def open(self, sealed: bytes) -> bytes:
        nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        if len(nonce) < NONCE_BYTES or len(body) < TAG_BYTES:
            raise PayloadKeyError(f"a payload sealed with key {self.key_id} is cut short")
        try:
            return self._aead.decrypt(nonce, body, self._aad())
        except InvalidTag:
            raise PayloadKeyError(
                f"a payload sealed with key {self.key_id} does not open: altered or another key"
            ) from None

    def _aad(self) -> bytes:
        # Binds the ciphertext to the key id its metadata names.
        return b"jobsheet-payload:" + self.key_id.encode()


def parse_key_ring(text: str) -> tuple[PayloadKey, ...]:
    """The keys of ``id:base64key`` entries separated by commas or new lines; first is current."""
    keys: list[PayloadKey] = []
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep:
            raise PayloadKeyError("a payload key entry is id:base64key")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise PayloadKeyError(f"payload key {key_id} is not base64") from None
        keys.append(PayloadKey(key_id, secret))
    if not keys:
        raise PayloadKeyError("the payload key ring is empty")
    if len({key.key_id for key in keys}) != len(keys):
        raise PayloadKeyError("two payload keys share an id")
    return tuple(keys)


def format_key_ring(keys: Sequence[PayloadKey]) -> str:
    return ",".join(key.entry() for key in keys)


class PayloadKeyRing:
    """The keys that open payloads; the first seals new ones.

    A ring read from a file (the local stack's) looks at the file again, at most once a second,
    so a rotation reaches running workers and the API without a restart.
    """

    def __init__(
        self,
        keys: Sequence[PayloadKey],
        *,
        reload: Callable[[], Sequence[PayloadKey] | None] | None = None,
    ) -> None:
        if not keys:
            raise PayloadKeyError("the payload key ring is empty")
        self._keys = tuple(keys)
        self._by_id = {key.key_id: key for key in self._keys}
        self._reload = reload
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str) -> PayloadKeyRing:
        return cls(parse_key_ring(text))

    @classmethod
    def from_file(cls, path: Path) -> PayloadKeyRing:
        """The ring in ``path``, read again when the file changes (a rotation)."""
        seen = path.stat()

        def reload() -> Sequence[PayloadKey] | None:
            nonlocal seen
            now = path.stat()
            if (now.st_mtime_ns, now.st_size, now.st_ino) == (
                seen.st_mtime_ns,
                seen.st_size,
                seen.st_ino,
            ):
                return None
            keys = parse_key_ring(path.read_text())
            seen = now
            return keys

        return cls(parse_key_ring(path.read_text()), reload=reload)

    @classmethod
    def generate(cls) -> PayloadKeyRing:
        """A ring of one fresh key (tests and benchmarks)."""
        return cls([PayloadKey.generate()])

    @property
    def current(self) -> PayloadKey:
        self._maybe_reload()
        return self._keys[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.key_id for key in self._keys)

    def key(self, key_id: str) -> PayloadKey:
        """The key named ``key_id``; a file-backed ring reads its file once more before refusing."""
        self._maybe_reload()
        found = self._by_id.get(key_id)
        if found is None and self._reload is not None:
            self._maybe_reload(force=True)
            found = self._by_id.get(key_id)
        if found is None:
            raise PayloadKeyError(f"no payload key {key_id!r} on this ring")
        return found

    def serialise(self) -> str:
        """``id:base64key,...``: the secret form of the whole ring (for JOBSHEET_PAYLOAD_KEYS)."""
        return format_key_ring(self._keys)

    def _maybe_reload(self, *, force: bool = False) -> None:
        if self._reload is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_INTERVAL_SECONDS:
            return
        with self._lock:
            self._checked = now
            try:
                fresh = self._reload()
            except (OSError, PayloadKeyError):
                return  # keep the keys we have; an unreadable file is tried again later
            if fresh is None:
                return
            keys = tuple(fresh)
            self._keys = keys
            self._by_id = {key.key_id: key for key in keys}


class EncryptionCodec(PayloadCodec):
    """Seals every payload with the ring's current key; opens what any ring key sealed."""

    def __init__(self, ring: PayloadKeyRing) -> None:
        self.ring = ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encode_one(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(payload) for payload in payloads]

    def encode_one(self, payload: Payload) -> Payload:
        key = self.ring.current
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key.key_id.encode()},
            data=key.seal(payload.SerializeToString()),
        )

    def decode_one(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        plain = self.ring.key(key_id).open(payload.data)
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise PayloadKeyError(f"a payload sealed with key {key_id} is not a payload") from None


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def iter_payloads(message: Message) -> Iterator[Payload]:
    """Every ``Payload`` inside ``message`` (a history, an event, a description), depth first."""
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            children = value.values() if _map_of_messages(descriptor) else []
        elif descriptor.is_repeated:
            children = value
        else:
            children = [value]
        for child in children:
            yield from iter_payloads(child)


def _map_of_messages(descriptor: object) -> bool:
    value_field = descriptor.message_type.fields_by_name["value"]  # type: ignore[attr-defined]
    return value_field.message_type is not None
