"""Turning what the ledger's accounts, the user registry and Temporal answer into the API's
refusals."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.api.errors import ApiRefusal, not_found
from jobsheet.ledger.errors import (
    INVALID_AMOUNT,
    UNKNOWN_ACCOUNT,
    UNKNOWN_KEY,
    UNKNOWN_USER,
)

MISSING = frozenset({UNKNOWN_ACCOUNT, UNKNOWN_USER, UNKNOWN_KEY})


def unavailable(what: str = "the service") -> ApiRefusal:
    return ApiRefusal(503, "Unavailable", f"{what} is unavailable; call again later")


@contextlib.asynccontextmanager
async def workflow_call(*, missing: str, service: str) -> AsyncIterator[None]:
    """Run a call to an account or a user's registry; its refusals become API refusals, a
    ``missing`` thing a plain 404 (``no account of yours``), an unreachable ``service`` 503."""
    try:
        yield
    except ApplicationError as exc:
        kind = exc.type or "Refused"
        if kind in MISSING:
            raise not_found(missing) from None
        status = 422 if kind == INVALID_AMOUNT else 409
        raise ApiRefusal(status, kind, exc.message) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise ApiRefusal(504, "Timeout", f"{service} did not answer in time; call again") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise not_found(missing) from None
        raise unavailable(service) from None
