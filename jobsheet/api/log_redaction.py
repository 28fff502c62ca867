"""Keep PAR and codec tokens out of the API's access log: a token in a log is a capability
leaked."""

from __future__ import annotations

import logging
import re

_TOKEN_IN_PATH = re.compile(
    r"(/par/(?:run/[^/?\s]+|write)/|/codec/)(?!(?:en|de)code(?:[/?\s]|$))[^/?\s]+"
)


def redact_par_tokens(text: str) -> str:
    """``text`` with the token part of every PAR and codec path replaced by ``[token]``."""
    return _TOKEN_IN_PATH.sub(r"\1[token]", text)


class RedactParTokens(logging.Filter):
    """A filter for ``uvicorn.access``, whose records carry the request path in their args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_par_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = redact_par_tokens(record.msg)
        return True
