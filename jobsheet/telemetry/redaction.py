"""Secrets that must never leave a process in a log line or a span: a PAR's URL is a
capability, so PAR and codec tokens in paths, and presigned URLs' signatures and credentials,
are replaced by placeholders. Route templates such as ``/par/run/{uid}/{token}`` stay."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_PATH = re.compile(
    r"(/par/(?:run/[^/?\s]+|write)/|/codec/)"
    r"(?!(?:en|de)code(?:[/?\s]|$)|\{token\}|\[token\])[^/?\s\"'#]+"
)
_PRESIGNED_SECRET = re.compile(
    r"((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature)=)[^&\s\"'#]+", re.IGNORECASE
)


def redact_secrets(text: str) -> str:
    """``text`` with every PAR or codec token in a path replaced by ``[token]`` and every
    presigned URL's signature and credential by ``[redacted]``."""
    text = _TOKEN_IN_PATH.sub(r"\1[token]", text)
    return _PRESIGNED_SECRET.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    """A log filter: redacts a record's message and its string arguments (uvicorn's access
    log carries the request path in its args) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_secrets(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact_secrets(record.msg)
        return True
