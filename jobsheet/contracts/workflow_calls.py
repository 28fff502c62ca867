"""Updates and queries by the name their workflow declares, typed with their input and result.

Code below the workflows (an activity that calls another workflow, a library client that an
activity uses) cannot import a workflow class: the workflow imports it. It calls through these
instead, declared once next to the models; tests/contracts/test_workflow_calls.py checks each against the
workflow's handler of that name. (The handlers keep their method names rather than
``@workflow.update(name=...)``: with a name the SDK types an async update's result as a
coroutine, and typed handles on the workflow class would lose their result type.)
:func:`send_update` and :func:`ask_query` are what the library clients (the ledger's, the user
registry's) send them with: busy workflows retried, refusals and missing workflows named.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.contracts.refusals import Refusal, refusal

ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")
BUSY_RETRIES = 8
BUSY_BACKOFF_SECONDS = 0.1


@dataclass(frozen=True)
class Update(Generic[ArgT, ResultT]):
    """A workflow update: its name, and the type its result is read as."""

    name: str
    result_type: Any

    async def execute(
        self, handle: WorkflowHandle[Any, Any], arg: ArgT, *, id: str | None = None
    ) -> ResultT:
        """Send the update to ``handle``'s workflow and wait for its result."""
        result: ResultT = await handle.execute_update(
            self.name, arg, id=id, result_type=self.result_type
        )
        return result

    async def execute_with_start(
        self,
        client: Client,
        arg: ArgT,
        *,
        start: WithStartWorkflowOperation[Any, Any],
        id: str | None = None,
    ) -> ResultT:
        """Send the update to the workflow ``start`` starts unless it is running already."""
        result: ResultT = await client.execute_update_with_start_workflow(
            self.name, arg, id=id, start_workflow_operation=start, result_type=self.result_type
        )
        return result


@dataclass(frozen=True)
class Query(Generic[ResultT]):
    """A workflow query: its name, and the type its answer is read as."""

    name: str
    result_type: Any

    async def ask(self, handle: WorkflowHandle[Any, Any], *args: Any) -> ResultT:
        """Query ``handle``'s workflow with ``args``."""
        answer: ResultT = await handle.query(
            self.name, args=list(args), result_type=self.result_type
        )
        return answer


def send_again_later(exc: RPCError) -> bool:
    """Whether an update refused with ``exc`` is worth sending again after a back-off (the same
    update id is deduplicated, so the repeat is harmless): the workflow has its maximum of
    updates in flight, or the server aborted the update (its workflow task was lost, or the run
    continued as new) and the SDK's own quick retries saw only that. Other transient errors the
    SDK retries itself."""
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return True
    return exc.status == RPCStatusCode.UNAVAILABLE and "update was aborted" in exc.message


def update_refusal(exc: WorkflowUpdateFailedError) -> Exception:
    """The workflow's refusal as a non-retryable ``ApplicationError`` (else the error itself)."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return refusal(cause.message, cause.type or "Refused")
    return exc


async def send_update(
    handle: WorkflowHandle[Any, Any],
    update: Update[ArgT, ResultT],
    arg: ArgT,
    *,
    id: str,
    missing: Refusal,
) -> ResultT:
    """Send ``update`` to ``handle``'s workflow as update ``id`` and wait for its result, sending
    it again while the workflow is busy. The workflow's refusal comes back as the non-retryable
    ``ApplicationError`` it raised; a workflow that does not exist as ``missing``, which names
    it as its caller knows it (``account alice-acct does not exist``), never by workflow id."""
    for attempt in range(BUSY_RETRIES + 1):
        try:
            return await update.execute(handle, arg, id=id)
        except WorkflowUpdateFailedError as exc:
            raise update_refusal(exc) from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise missing.to_application_error() from None
            if not send_again_later(exc) or attempt == BUSY_RETRIES:
                raise
        # The workflow is busy, or aborted the update: back off (jittered, so that a crowd of
        # callers spreads out) and send the same update again.
        await asyncio.sleep(min(BUSY_BACKOFF_SECONDS * 2**attempt, 2.0) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


async def ask_query(
    handle: WorkflowHandle[Any, Any], query: Query[ResultT], *args: Any, missing: Refusal
) -> ResultT:
    """Query ``handle``'s workflow with ``args``; a workflow that does not exist is ``missing``."""
    try:
        return await query.ask(handle, *args)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise missing.to_application_error() from None
        raise
