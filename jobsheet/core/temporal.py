"""Connect to Temporal with the pydantic data converter and encrypted payloads; exit safely after."""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from jobsheet.core.payload_codec import (
    EncryptionCodec,
    PayloadKey,
    PayloadKeyError,
    PayloadKeyRing,
    format_key_ring,
    parse_key_ring,
)
from jobsheet.core.settings import Settings

PAYLOAD_KEYS_FILE = "payload-keys"
CODEC_TOKEN_FILE = "codec-token"


def data_converter(ring: PayloadKeyRing | None) -> DataConverter:
    """The pydantic converter, with every payload sealed by ``ring`` (None: in clear, for
    replaying old histories and for benchmarks that measure the codec's cost).

    Failure messages and stack traces move into an encoded (so encrypted) attribute too: an
    error can quote a URL.
    """
    if ring is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def payload_key_ring(settings: Settings) -> PayloadKeyRing:
    """``JOBSHEET_PAYLOAD_KEYS``, else the stack's key file (generated once, 0600), re-read
    when ``jobsheet stack rotate-payload-key`` changes it."""
    if settings.payload_keys is not None:
        return PayloadKeyRing.parse(settings.payload_keys.get_secret_value())
    path = settings.state_dir / PAYLOAD_KEYS_FILE
    _create_secret_file(path, lambda: PayloadKey.generate().entry() + "\n")
    return PayloadKeyRing.from_file(path)


def rotate_payload_key(settings: Settings) -> PayloadKey:
    """Put a new current key in front of the stack's key file; the old keys stay, so every
    payload they sealed still opens. Refused when the keys come from the environment."""
    if settings.payload_keys is not None:
        raise PayloadKeyError(
            "the payload keys come from JOBSHEET_PAYLOAD_KEYS: put a new id:base64key entry "
            "first in it (keep the others) and restart the workers and the API"
        )
    path = settings.state_dir / PAYLOAD_KEYS_FILE
    _create_secret_file(path, lambda: PayloadKey.generate().entry() + "\n")
    keys = parse_key_ring(path.read_text())
    new = PayloadKey.generate()
    _replace_secret_file(path, format_key_ring([new, *keys]).replace(",", "\n") + "\n")
    return new


def codec_token(settings: Settings) -> str:
    """The bearer token of the codec endpoint: ``JOBSHEET_CODEC_TOKEN``, else generated once
    in the state directory (0600)."""
    if settings.codec_token is not None:
        return settings.codec_token.get_secret_value()
    path = settings.state_dir / CODEC_TOKEN_FILE
    _create_secret_file(path, lambda: secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def _create_secret_file(path: Path, make: Callable[[], str]) -> None:
    """Write ``path`` (0600) once, whole: written aside and linked in, so a process that races
    this one reads either nothing or everything."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make())
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    finally:
        aside.unlink()


def _replace_secret_file(path: Path, text: str) -> None:
    aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(aside, path)


async def connect(settings: Settings) -> Client:
    """A Temporal client for ``settings``: pydantic models on every boundary, payloads sealed
    with the settings' payload keys."""
    from jobsheet.telemetry.metrics import process_runtime
    from jobsheet.telemetry.tracing import client_interceptors

    config = settings.temporal_connect_config()
    converter = data_converter(payload_key_ring(settings))
    return await Client.connect(
        data_converter=converter,
        runtime=process_runtime(),
        interceptors=client_interceptors(),
        **config,
    )


def exit_without_teardown(code: int) -> NoReturn:
    """Flush stdout and stderr, then leave with ``os._exit(code)``.

    temporalio's native threads can abort the interpreter while it finalises (sdk-python#300,
    "PyGILState_Release", status 134), so a program that used a client or worker exits with its
    own status this way instead of through interpreter teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
