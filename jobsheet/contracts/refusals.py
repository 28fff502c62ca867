"""A user's refusal as it crosses Temporal: one constructor for every layer that refuses."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory


def refusal(message: str, kind: str) -> ApplicationError:
    """A refusal named ``kind`` (``InsufficientFunds``, ``WrongState``…) with one readable
    sentence.

    Non-retryable: asking again gets the same answer. ``BENIGN``: the SDK logs it at DEBUG
    rather than as a WARNING traceback and leaves it out of its failure metrics, since refusing
    a user is the service working; the worker logs one INFO line instead
    (jobsheet/telemetry/logs.py).
    """
    return ApplicationError(
        message, type=kind, non_retryable=True, category=ApplicationErrorCategory.BENIGN
    )


class Refusal(Exception):
    """A refusal by a pure rule (the ledger's, the registry's, a cheque's): ``type`` names it
    (``jobsheet/ledger/errors.py`` lists the names), ``message`` says it in words."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message

    def to_application_error(self) -> ApplicationError:
        return refusal(self.message, self.type)
