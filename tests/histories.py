"""Recorded histories in clear: a fresh history's payloads are sealed with the session's keys,
which do not outlive the session, so a history kept for the Replayer test is opened first."""

from __future__ import annotations

from google.protobuf.message import Message
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory

from jobsheet.core.payload_codec import EncryptionCodec, is_encrypted, iter_payloads


def in_clear(history: WorkflowHistory, client: Client) -> WorkflowHistory:
    """``history`` with every payload opened by ``client``'s codec (what it looked like before
    payloads were encrypted, so it replays with any key ring)."""
    codec = client.data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec), "the client seals no payloads"
    proto = History(events=history.events)
    decrypt_in_place(proto, codec)
    return WorkflowHistory(history.workflow_id, list(proto.events))


def decrypt_in_place(message: Message, codec: EncryptionCodec) -> None:
    """Open every encrypted payload inside ``message`` (e.g. a history, to commit it in clear
    for the Replayer test)."""
    for payload in list(iter_payloads(message)):
        if is_encrypted(payload):
            payload.CopyFrom(codec.decode_one(payload))
