"""What the SDK raises: one family of readable errors, grouped by what the caller can do about it.

Each error's message is one readable sentence. The CLI maps the four groups to its exit codes:
bad input (2), refused by the service (3), not found (4), unavailable (5).
"""

from __future__ import annotations


class JobsheetError(Exception):
    """Base of every SDK error; ``reason`` is a short machine-readable name (e.g. ``Expired``)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__


class BadInput(JobsheetError):
    """The caller's input cannot be used: a missing file, an unknown calculation, bad parameters."""


class Refused(JobsheetError):
    """The service refused: insufficient funds, an expired PAR, a job in the wrong state."""


class Unauthorised(Refused):
    """The API did not accept the request's signature: unknown or revoked key, stale or changed
    request (``reason`` is the API's error, e.g. ``KeyRevoked`` or ``SignatureStale``)."""


class NotFound(JobsheetError):
    """No such job (or user, account, PAR), or one that is not the caller's."""


class Unavailable(JobsheetError):
    """A server (the API, S3) could not be reached, or answered that it cannot serve now."""


class IntegrityError(JobsheetError):
    """A downloaded output does not match the size or sha256 its manifest promised."""


class RunRefused(JobsheetError):
    """The API refused a run trigger; ``status`` is the HTTP status it answered with."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message, reason=reason)
        self.status = status
