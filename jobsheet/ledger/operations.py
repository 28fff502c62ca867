"""Calling the ledger from a Temporal client: open, deposit, cash, receipt, refund, read.

Used by the ledger activities, the CLI and tests. Workflow failures come back as the
non-retryable ``ApplicationError`` the workflow raised (``type`` from ``jobsheet.ledger.errors``);
an account that does not exist is ``UnknownAccount``. Users' keys and nonces are the user
registry's (``jobsheet.identity.registry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from decimal import Decimal
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.contracts.refusals import Refusal, refusal
from jobsheet.contracts.workflow_calls import (
    Query,
    Update,
    ask_query,
    send_update,
    update_refusal,
)
from jobsheet.core.money import to_money
from jobsheet.core.names import check_name
from jobsheet.identity.keys import Identity
from jobsheet.ledger.calls import (
    ACCOUNT_WORKFLOW,
    BALANCE,
    CASH_CHEQUE,
    CREDIT,
    DEPOSIT,
    NOTE_KEEPER,
    RECEIPT,
    REFUND,
    SET_OVERDRAFT_LIMIT,
    STATEMENT,
    OpenAccountInput,
)
from jobsheet.ledger.errors import (
    ACCOUNT_EXISTS,
    CHEQUE_ALREADY_CASHED,
    UNKNOWN_ACCOUNT,
    UNKNOWN_CREDIT_NOTE,
)
from jobsheet.ledger.models import (
    BalanceView,
    CashChequeInput,
    CreditInput,
    CreditNote,
    DepositInput,
    NoteInput,
    NoteKeeper,
    OverdraftInput,
    ReceiptInput,
    ReceiptResult,
    RefundInput,
    RefundResult,
    Statement,
    account_workflow_id,
    credit_note_workflow_id,
    note_uid_for,
)
from jobsheet.ledger.orders import sign_deposit, sign_overdraft

T = TypeVar("T")
ArgT = TypeVar("ArgT")
NoteOrder = TypeVar("NoteOrder", ReceiptInput, RefundInput)
NOTE_START_WAIT_SECONDS = 30.0
"""How long a receipt or refund waits for a note's workflow its account is starting."""


def new_key(prefix: str = "op") -> str:
    """A fresh idempotency key."""
    return f"{prefix}-{uuid.uuid4()}"


async def open_account(
    client: Client,
    *,
    owner: str,
    task_queue: str,
    account: str | None = None,
    overdraft_limit: Decimal | int | str = 0,
    operator: Identity | None = None,
    continue_as_new_after: int = 1000,
) -> str:
    """Start the account workflow for a new account and return the account uid.

    A non-zero ``overdraft_limit`` is an order signed by ``operator`` (required then), sent with
    the start so that the account never runs without it. A name that breaks the rule of
    :mod:`jobsheet.core.names` is refused (``InvalidName``, a ``ValueError``) before any workflow
    starts.
    """
    uid = check_name(account or f"acct-{uuid.uuid4().hex[:12]}", what="account name")
    check_name(owner, what="owner name")
    limit = to_money(overdraft_limit)
    if limit and operator is None:
        raise ValueError("an overdraft limit is the operator's order: pass operator=")
    request = OpenAccountInput(
        account=uid, owner=owner, continue_as_new_after=continue_as_new_after
    )
    options: dict[str, Any] = {
        "id": account_workflow_id(uid),
        "task_queue": task_queue,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "id_conflict_policy": WorkflowIDConflictPolicy.FAIL,
        "static_summary": f"ledger of account {uid} (owner {owner})",
    }
    try:
        if not limit or operator is None:
            await client.start_workflow(ACCOUNT_WORKFLOW, request, **options)
        else:
            order = sign_overdraft(
                operator, account=uid, limit=limit, idempotency_key=new_key("overdraft")
            )
            start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
                ACCOUNT_WORKFLOW, request, **options
            )
            await _update_with_start(client, SET_OVERDRAFT_LIMIT, order, start)
    except WorkflowAlreadyStartedError:
        raise refusal(f"account {uid} already exists", ACCOUNT_EXISTS) from None
    return uid


async def _update_with_start(
    client: Client,
    update: Update[OverdraftInput, BalanceView],
    order: OverdraftInput,
    start: WithStartWorkflowOperation[Any, Any],
) -> BalanceView:
    """Start a workflow with ``order`` as its first update (the order's key is the update id).

    A refused start leaves its error in ``start`` as well; it is read here, so that asyncio
    does not report it as never retrieved.
    """
    try:
        return await update.execute_with_start(client, order, start=start, id=order.idempotency_key)
    except WorkflowUpdateFailedError as exc:
        raise update_refusal(exc) from None
    except (RPCError, WorkflowAlreadyStartedError, WorkflowUpdateRPCTimeoutOrCancelledError):
        with contextlib.suppress(BaseException):
            await start.workflow_handle()
        raise


async def set_overdraft_limit(
    client: Client,
    account: str,
    limit: Decimal | int | str,
    *,
    operator: Identity,
    idempotency_key: str | None = None,
) -> BalanceView:
    """Let ``account`` go ``limit`` below zero from now on, on an order signed by ``operator``."""
    key = idempotency_key or new_key("overdraft")
    order = sign_overdraft(operator, account=account, limit=limit, idempotency_key=key)
    return await _update(client, account, SET_OVERDRAFT_LIMIT, order, key)


def account_handle(client: Client, account: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(account_workflow_id(account))


_NO_NOTE_WORKFLOW = "NoCreditNoteWorkflow"  # never leaves this module


def _no_account(account: str) -> Refusal:
    return Refusal(UNKNOWN_ACCOUNT, f"account {account} does not exist")


async def _update(client: Client, account: str, update: Update[ArgT, T], arg: ArgT, key: str) -> T:
    """Send ``update`` to ``account`` as update ``key`` (``UnknownAccount`` if it does not
    exist)."""
    handle = account_handle(client, account)
    return await send_update(handle, update, arg, id=key, missing=_no_account(account))


async def _query(client: Client, account: str, query: Query[T], *args: Any) -> T:
    handle = account_handle(client, account)
    return await ask_query(handle, query, *args, missing=_no_account(account))


async def deposit(
    client: Client,
    account: str,
    amount: Decimal | int | str,
    *,
    operator: Identity,
    idempotency_key: str | None = None,
    reference: str = "",
) -> BalanceView:
    """Add ``amount`` to ``account``'s balance (once per idempotency key), on an order signed by
    ``operator``: accounts accept deposits only from the operator their workers trust."""
    key = idempotency_key or new_key("deposit")
    request = sign_deposit(
        operator, account=account, amount=amount, idempotency_key=key, reference=reference
    )
    return await _update(client, account, DEPOSIT, request, key)


async def cash_cheque(client: Client, request: CashChequeInput) -> CreditNote:
    """Cash a cheque on the account it draws on: a hold and a credit note.

    The same idempotency key again gets the same note, also after the account continued as new
    (the account then finds the cheque's note taken, and the note names the key that made it).
    """
    account = request.cheque.account
    try:
        return await _update(client, account, CASH_CHEQUE, request, request.idempotency_key)
    except ApplicationError as exc:
        if exc.type != CHEQUE_ALREADY_CASHED:
            raise
        uid = note_uid_for(request.cheque.uid)
        started = await note_start_input(client, uid, request.cheque.account)
        if started is None or started.cash_key != request.idempotency_key:
            raise
        return started.note


def note_handle(client: Client, note: CreditNote) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(credit_note_workflow_id(note.uid, note.account))


async def note_start_input(client: Client, note_uid: str, account: str) -> NoteInput | None:
    """What the workflow of credit note ``note_uid`` was started with (read from its history, so
    it answers before the note's first workflow task, which waits for its ``receipt_by``), or
    None when there is no such workflow."""
    handle = client.get_workflow_handle(credit_note_workflow_id(note_uid, account))
    try:
        async for event in handle.fetch_history_events():
            started = event.workflow_execution_started_event_attributes
            [value] = await client.data_converter.decode(started.input.payloads, [NoteInput])
            return value if isinstance(value, NoteInput) else None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return None


async def note_stands(client: Client, note: CreditNote) -> bool:
    """Whether ``note`` is a hold its account keeps: its workflow was started for this very
    note (waiting the moment the account takes to start it), or the account keeps it itself
    (placed before notes were workflows). False for a cashing its account took back because
    the cheque had been cashed before."""
    deadline = asyncio.get_running_loop().time() + NOTE_START_WAIT_SECONDS
    while True:
        started = await note_start_input(client, note.uid, note.account)
        if started is not None:
            return started.note == note
        keeper = await _query(client, note.account, NOTE_KEEPER, note.uid)
        if keeper is NoteKeeper.ACCOUNT:
            return True
        if keeper is NoteKeeper.WORKFLOW:
            # Not starting any more: started just now, or never (taken back).
            started = await note_start_input(client, note.uid, note.account)
            return started is not None and started.note == note
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)


async def receipt(client: Client, request: ReceiptInput) -> ReceiptResult:
    """Receipt ``amount`` of a credit note; the rest returns to the payer."""
    return await _to_note(client, request.credit_note, RECEIPT, request)


async def refund(client: Client, request: RefundInput) -> RefundResult:
    """Release a credit note's whole hold."""
    return await _to_note(client, request.credit_note, REFUND, request)


async def _to_note(
    client: Client,
    note: CreditNote,
    update: Update[NoteOrder, T],
    request: NoteOrder,
) -> T:
    """Send ``update`` to whoever keeps ``note``: its workflow (waiting the moment it takes
    its account to start it), or its account for a note placed before notes were workflows."""
    key = request.idempotency_key
    deadline = asyncio.get_running_loop().time() + NOTE_START_WAIT_SECONDS
    no_workflow = Refusal(_NO_NOTE_WORKFLOW, f"credit note {note.uid} has no workflow")
    while True:
        try:
            handle = note_handle(client, note)
            return await send_update(handle, update, request, id=key, missing=no_workflow)
        except ApplicationError as exc:
            if exc.type != _NO_NOTE_WORKFLOW:
                raise
        keeper = await _query(client, note.account, NOTE_KEEPER, note.uid)
        if keeper is NoteKeeper.ACCOUNT:
            return await _update(client, note.account, update, request, key)
        if asyncio.get_running_loop().time() > deadline:
            raise refusal(f"{note.account} keeps no credit note {note.uid}", UNKNOWN_CREDIT_NOTE)
        await asyncio.sleep(0.05 if keeper is NoteKeeper.STARTING else 0.2)


async def credit(client: Client, account: str, request: CreditInput) -> BalanceView:
    """Credit ``account`` with a transfer from another account (once per transfer id)."""
    return await _update(client, account, CREDIT, request, request.idempotency_key)


async def balance(client: Client, account: str) -> BalanceView:
    return await _query(client, account, BALANCE)


async def statement(client: Client, account: str, *, limit: int = 50) -> Statement:
    return await _query(client, account, STATEMENT, limit)


async def apply_deposit(client: Client, account: str, request: DepositInput) -> BalanceView:
    """Forward a deposit the operator signed; the account verifies the signature itself."""
    return await _update(client, account, DEPOSIT, request, request.idempotency_key)
