"""Encrypted payloads: AES-256-GCM under a key ring, rotation, and old payloads read as they were."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import History, HistoryEvent

from jobsheet.core import payload_codec
from jobsheet.core.payload_codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    PayloadKey,
    PayloadKeyError,
    PayloadKeyRing,
    iter_payloads,
)
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import (
    CODEC_TOKEN_FILE,
    PAYLOAD_KEYS_FILE,
    codec_token,
    data_converter,
    payload_key_ring,
    rotate_payload_key,
)
from jobsheet.jobs.models import JobState
from tests.histories import decrypt_in_place

SECRET = b'{"upload_url": "http://s3/x?X-Amz-Signature=abc", "token": "wp1.secret"}'


def plain(data: bytes = SECRET) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


async def test_a_sealed_payload_names_its_key_hides_its_data_and_opens() -> None:
    ring = PayloadKeyRing.generate()
    codec = EncryptionCodec(ring)
    [sealed] = await codec.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == ring.current.key_id.encode()
    assert set(sealed.metadata) == {"encoding", KEY_ID_METADATA}
    assert b"X-Amz-Signature" not in sealed.data and b"json/plain" not in sealed.data
    [again] = await codec.encode([plain()])
    assert again.data != sealed.data, "a fresh nonce per payload"
    assert await codec.decode([sealed, again]) == [plain(), plain()]


async def test_a_payload_the_codec_did_not_seal_decodes_unchanged() -> None:
    codec = EncryptionCodec(PayloadKeyRing.generate())
    bare = Payload(data=b"no metadata at all")
    assert await codec.decode([plain(), bare]) == [plain(), bare]


async def test_every_key_on_the_ring_opens_and_the_first_seals() -> None:
    old = PayloadKeyRing.generate()
    [by_old] = await EncryptionCodec(old).encode([plain()])
    new_key = PayloadKey.generate()
    rotated = PayloadKeyRing.parse(f"{new_key.entry()},{old.serialise()}")
    codec = EncryptionCodec(rotated)
    assert await codec.decode([by_old]) == [plain()]
    [by_new] = await codec.encode([plain()])
    assert by_new.metadata[KEY_ID_METADATA] == new_key.key_id.encode()
    with pytest.raises(PayloadKeyError, match="no payload key"):
        await EncryptionCodec(old).decode([by_new])


async def test_an_altered_payload_or_a_relabelled_key_does_not_open() -> None:
    first, second = PayloadKey.generate(), PayloadKey.generate()
    ring = PayloadKeyRing([first, second])
    codec = EncryptionCodec(ring)
    [sealed] = await codec.encode([plain()])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadKeyError, match="does not open"):
        await codec.decode([flipped])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_METADATA] = second.key_id.encode()
    with pytest.raises(PayloadKeyError, match="does not open"):
        await codec.decode([relabelled])
    for cut in (b"", sealed.data[:20]):
        short = Payload(metadata=dict(sealed.metadata), data=cut)
        with pytest.raises(PayloadKeyError, match="cut short"):
            await codec.decode([short])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("k1", "id:base64key"),
        ("k1:not base64!", "not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "not 32 bytes"),
        (f"bad/id:{base64.b64encode(bytes(32)).decode()}", "key id"),
        (
            f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}",
            "share an id",
        ),
    ],
)
def test_a_bad_ring_is_refused_naming_why(text: str, reason: str) -> None:
    with pytest.raises(PayloadKeyError, match=reason):
        PayloadKeyRing.parse(text)


def test_a_ring_reads_commas_or_lines_and_never_shows_its_keys() -> None:
    a, b = PayloadKey.generate(), PayloadKey.generate()
    assert PayloadKeyRing.parse(f" {a.entry()}\n{b.entry()}\n").key_ids == (a.key_id, b.key_id)
    assert PayloadKeyRing.parse(f"{a.entry()},{b.entry()}").current == a
    assert base64.b64encode(a.secret).decode() not in repr(a)


def test_the_stack_generates_its_keys_and_token_once_0600(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    ring = payload_key_ring(settings)
    path = tmp_path / PAYLOAD_KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert payload_key_ring(settings).key_ids == ring.key_ids
    token = codec_token(settings)
    assert len(token) >= 43 and codec_token(settings) == token
    assert stat.S_IMODE((tmp_path / CODEC_TOKEN_FILE).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    configured = settings.model_copy(update={"codec_token": SecretStr("from-the-environment")})
    assert codec_token(configured) == "from-the-environment"


async def test_rotation_adds_a_current_key_that_running_rings_pick_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(state_dir=tmp_path)
    running = EncryptionCodec(payload_key_ring(settings))  # a worker started before
    [before] = await running.encode([plain()])
    new = rotate_payload_key(settings)
    path = tmp_path / PAYLOAD_KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    after_ring = payload_key_ring(settings)
    assert after_ring.current.key_id == new.key_id and len(after_ring.key_ids) == 2
    [after] = await EncryptionCodec(after_ring).encode([plain()])
    # The running ring opens the new key's payloads at once (it reads its file on a miss)...
    assert await running.decode([after, before]) == [plain(), plain()]
    # ...and seals with the new key once it looks at the file again.
    monkeypatch.setattr(payload_codec, "RELOAD_INTERVAL_SECONDS", 0.0)
    [resealed] = await running.encode([plain()])
    assert resealed.metadata[KEY_ID_METADATA] == new.key_id.encode()


def test_rotation_is_refused_when_the_keys_come_from_the_environment(tmp_path: Path) -> None:
    ring = PayloadKeyRing.generate()
    settings = Settings(state_dir=tmp_path, payload_keys=SecretStr(ring.serialise()))
    assert payload_key_ring(settings).key_ids == ring.key_ids
    with pytest.raises(PayloadKeyError, match="JOBSHEET_PAYLOAD_KEYS"):
        rotate_payload_key(settings)
    assert not (tmp_path / PAYLOAD_KEYS_FILE).exists()


async def test_the_products_converter_seals_models_and_reads_old_payloads() -> None:
    converter = data_converter(PayloadKeyRing.generate())
    [sealed] = await converter.encode([JobState.RUNNING])
    assert sealed.metadata["encoding"] == ENCODING
    assert await converter.decode([sealed], [JobState]) == [JobState.RUNNING]
    old = data_converter(None)
    [clear] = await old.encode([JobState.RUNNING])
    assert clear.metadata["encoding"] == b"json/plain"
    assert await converter.decode([clear], [JobState]) == [JobState.RUNNING]


async def test_a_history_is_opened_in_place() -> None:
    codec = EncryptionCodec(PayloadKeyRing.generate())
    event = HistoryEvent(event_id=1)
    attributes = event.workflow_execution_started_event_attributes
    attributes.input.CopyFrom(Payloads(payloads=await codec.encode([plain(), plain(b"2")])))
    attributes.memo.fields["note"].CopyFrom((await codec.encode([plain(b"memo")]))[0])
    history = History(events=[event])
    assert all(p.metadata["encoding"] == ENCODING for p in iter_payloads(history))
    decrypt_in_place(history, codec)
    assert sorted(p.data for p in iter_payloads(history)) == sorted([SECRET, b"2", b"memo"])
