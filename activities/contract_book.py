"""Calls to a compute service's contracts, shared by the job's steps and the run activity.

A contract is reserved through the service's contract book (update-with-start), which starts
the contract's own workflow; it is released and read through that workflow. A contract that a
book begun before contracts became workflows still holds in its records has no workflow: it is
released and read through the book, as before (docs/contract-book.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.compute.book import (
    BOOK_CONTRACT,
    BOOK_RELEASE,
    BOOK_STARTED,
    BOOK_WORKFLOW,
    CONTRACT_RECORD,
    CONTRACT_RELEASE,
    RESERVE,
    ContractBookInput,
    ReserveRequest,
    contract_book_id,
    contract_workflow_id,
)
from jobsheet.compute.models import (
    ALREADY_RESERVED,
    BOOK_ROLLING,
    SERVICE_AT_CAPACITY,
    ComputeContract,
    ContractRecord,
    ContractState,
    ReleaseRequest,
    ReleaseResult,
)
from jobsheet.contracts.refusals import refusal
from jobsheet.contracts.workflow_calls import send_again_later

ATTEMPTS = 30
"""How often a reservation is sent again while the book continues as new or is busy."""
BACKOFF_SECONDS = 0.05


async def _later(attempt: int) -> None:
    """Back off, jittered so that a crowd of callers spreads out."""
    await asyncio.sleep(min(BACKOFF_SECONDS * 2**attempt, 1.0) * (0.5 + random.random()))


async def reserve(
    client: Client, contract: ComputeContract, *, max_open_contracts: int
) -> ContractRecord:
    """Have the service's book hold ``contract`` (starting the book if need be); a contract
    reserved before answers with its record, whatever was drafted since."""
    request = ReserveRequest(contract=contract, max_open_contracts=max_open_contracts)
    for attempt in range(ATTEMPTS):
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            BOOK_WORKFLOW,
            ContractBookInput(service=contract.service, max_open_contracts=max_open_contracts),
            id=contract_book_id(contract.task_queue),
            task_queue=contract.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        try:
            return await RESERVE.execute_with_start(client, request, start=start)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if not isinstance(cause, ApplicationError):
                raise
            if cause.type == BOOK_ROLLING and attempt + 1 < ATTEMPTS:
                await _later(attempt)
                continue
            if cause.type in (ALREADY_RESERVED, SERVICE_AT_CAPACITY):
                # Reserved before (in an earlier run of the book, or a full book asked again):
                # the contract's workflow holds the record, once its start has landed.
                found, record = await _started_record(
                    client, contract.contract_id, task_queue=contract.task_queue
                )
                if found:
                    if record is None:
                        raise refusal(
                            f"contract {contract.contract_id} was reserved, then ended without "
                            "a record (its workflow was terminated)",
                            "ContractNotHeld",
                        ) from None
                    return record
            raise refusal(cause.message, cause.type or "ContractRefused") from None
        except RPCError as exc:
            # A refused update-with-start leaves its error in ``start`` too: read it, so that
            # asyncio does not report it as never retrieved.
            with contextlib.suppress(BaseException):
                await start.workflow_handle()
            if not send_again_later(exc) or attempt + 1 == ATTEMPTS:
                raise
            # The book has its maximum of updates in flight, or aborted this one while it
            # continued as new: the same reservation again is refused or answered as before.
            await _later(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def release(client: Client, contract_id: str, *, task_queue: str) -> ReleaseResult:
    """Free the contract's slot; releasing twice, or an unknown contract, changes nothing.
    A contract whose workflow the book is still starting is released once it has started."""
    handle = _contract_handle(client, contract_id)
    request = ReleaseRequest(contract_id=contract_id)
    book = client.get_workflow_handle(contract_book_id(task_queue))
    for attempt in range(ATTEMPTS):
        try:
            return await CONTRACT_RELEASE.execute(handle, request)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        found, record = await _workflow_record(client, contract_id)
        if found and (record is None or record.state != ContractState.HELD):  # it had ended
            state = record.state if record else None
            return ReleaseResult(contract_id=contract_id, released_now=False, state=state)
        if not found and not await _book_started(book, contract_id):
            break
        # Started between the two calls, or the book's start is on its way: release it again.
        await _later(attempt)
    try:
        return await BOOK_RELEASE.execute(book, request)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    return ReleaseResult(contract_id=contract_id, released_now=False, state=None)


async def contract_record(
    client: Client, contract_id: str, *, task_queue: str
) -> ContractRecord | None:
    """The contract as its workflow (or, for a record a book still holds, the book) has it;
    None when the service never held it."""
    found, record = await _started_record(client, contract_id, task_queue=task_queue)
    if found:
        return record
    book = client.get_workflow_handle(contract_book_id(task_queue))
    try:
        return await BOOK_CONTRACT.ask(book, contract_id)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    return None


async def _started_record(
    client: Client, contract_id: str, *, task_queue: str
) -> tuple[bool, ContractRecord | None]:
    """(whether the contract has a workflow, its record), waiting while the book that started
    it is still starting it (it answers a reservation before the start lands)."""
    book = client.get_workflow_handle(contract_book_id(task_queue))
    for attempt in range(ATTEMPTS):
        found, record = await _workflow_record(client, contract_id)
        if found or not await _book_started(book, contract_id):
            return found, record
        await _later(attempt)
    return False, None


async def _book_started(book: WorkflowHandle[Any, Any], contract_id: str) -> bool:
    """Whether the book's current or previous run started the contract's workflow."""
    try:
        return bool(await BOOK_STARTED.ask(book, contract_id))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    except WorkflowQueryFailedError:
        return False  # a book from before the query


async def _workflow_record(client: Client, contract_id: str) -> tuple[bool, ContractRecord | None]:
    """(whether the contract has a workflow, its record): from the running workflow's query,
    or the result of one that ended (no worker needed then); no record if it was terminated."""
    handle = _contract_handle(client, contract_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return False, None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return True, await handle.result()
    if description.status != WorkflowExecutionStatus.RUNNING:
        return True, None
    return True, await CONTRACT_RECORD.ask(handle)


def _contract_handle(client: Client, contract_id: str) -> WorkflowHandle[Any, ContractRecord]:
    return client.get_workflow_handle(contract_workflow_id(contract_id), result_type=ContractRecord)
