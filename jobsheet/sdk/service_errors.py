"""Translating what Temporal raises into the SDK's readable errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.sdk.errors import (
    BadInput,
    JobsheetError,
    NotFound,
    Refused,
    Unavailable,
    from_rejection,
)

NOT_FOUND_TYPES = frozenset({"UnknownAccount", "UnknownUser", "UnknownKey"})
UNAVAILABLE_CODES = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)


def _application_error(exc: BaseException) -> ApplicationError | None:
    while exc is not None:
        if isinstance(exc, ApplicationError):
            return exc
        exc = exc.cause if isinstance(exc, FailureError) else exc.__cause__  # type: ignore[assignment]
    return None


def translate(exc: BaseException, *, what: str, uid: str = "") -> JobsheetError | None:
    """The SDK error for a Temporal failure of ``what``, or None when it is not one we know."""
    if isinstance(exc, JobsheetError):
        return exc
    if isinstance(exc, WorkflowUpdateFailedError):
        cause = _application_error(exc)
        if cause is None:
            return Refused(f"{what} failed: {exc.cause or exc}")
        if cause.type == "JobRejected":
            return from_rejection(cause.message)
        if cause.type in NOT_FOUND_TYPES:
            return NotFound(f"{what} failed: {cause.message}", reason=cause.type)
        return Refused(f"{what} was refused: {cause.message}", reason=cause.type or "Refused")
    if isinstance(exc, RPCError):
        if exc.status == RPCStatusCode.NOT_FOUND:
            subject = f"job {uid}" if uid else "the job"
            return NotFound(f"{subject} does not exist", reason="UnknownJob")
        if exc.status in UNAVAILABLE_CODES:
            return Unavailable(f"Temporal could not be reached for {what}: {exc.message}")
        if exc.status == RPCStatusCode.FAILED_PRECONDITION:
            return Refused(f"{what} was refused: {exc.message}", reason="WorkflowClosed")
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            return BadInput(f"{what} was refused: {exc.message}", reason="InvalidArgument")
        return Refused(f"{what} failed: {exc.message}", reason=exc.status.name)
    return None


@contextlib.contextmanager
def service_call(what: str, *, uid: str = "") -> Iterator[None]:
    """Run a Temporal call, re-raising its failure as a readable SDK error."""
    try:
        yield
    except Exception as exc:
        error = translate(exc, what=what, uid=uid)
        if error is None or error is exc:
            raise
        raise error from exc
