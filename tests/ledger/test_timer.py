"""The automatic refund at ``receipt_by`` on the time-skipping server, with nobody acting, after
the account has continued as new with the hold open."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from jobsheet.identity.keys import Identity, PublicKeyRecord
from jobsheet.identity.models import KeysLookupInput, OperatorKeys
from jobsheet.ledger.calls import OpenAccountInput
from jobsheet.ledger.models import (
    AuditInput,
    BalanceView,
    CashChequeInput,
    EntryKind,
    HoldClosed,
    HoldStatus,
    LedgerEntry,
    SignNoteEndInput,
    StartNotesInput,
    StartNotesResult,
    Transfer,
    TransferOutcome,
    account_workflow_id,
    credit_note_workflow_id,
)
from jobsheet.ledger.orders import sign_deposit, sign_hold_closed, sign_note
from tests.ledger.factories import RESOURCE, cheque, identity
from tests.ledger.test_account_workflow import wait_for
from workflows.account import AccountWorkflow
from workflows.credit_note import CreditNoteWorkflow


class StubLedgerActivities:
    """The account workflow's activities without Temporal clients or S3: the audit trail in
    memory, and fixed keys for the operator and the account's owner."""

    def __init__(self, operator: Identity, owner: Identity) -> None:
        self.audited: list[LedgerEntry] = []
        self.operator = operator
        self.owner = owner
        self.ledger = identity("ledger")

    @activity.defn(name="ledger_public_key")
    async def ledger_public_key(self) -> PublicKeyRecord:
        return self.ledger.public_record()

    @activity.defn(name="start_credit_notes")
    async def start_credit_notes(self, request: StartNotesInput) -> StartNotesResult:
        for started in request.notes:
            note = started.note
            await activity.client().start_workflow(
                CreditNoteWorkflow.run,
                sign_note(self.ledger, started),
                id=credit_note_workflow_id(note.uid, note.account),
                task_queue=activity.info().task_queue,
            )
        return StartNotesResult()

    @activity.defn(name="sign_note_end")
    async def sign_note_end(self, request: SignNoteEndInput) -> HoldClosed:
        return sign_hold_closed(self.ledger, request.closed)

    @activity.defn(name="write_ledger_entries")
    async def write_ledger_entries(self, request: AuditInput) -> int:
        self.audited += request.entries
        return len(request.entries)

    @activity.defn(name="lookup_user_keys")
    async def lookup_user_keys(self, request: KeysLookupInput) -> list[PublicKeyRecord]:
        return [self.owner.public_record()] if request.user == self.owner.name else []

    @activity.defn(name="operator_keys")
    async def operator_keys(self) -> OperatorKeys:
        return OperatorKeys(user=self.operator.name, keys=[self.operator.public_record()])

    @activity.defn(name="deliver_transfer")
    async def deliver_transfer(self, transfer: Transfer) -> TransferOutcome:
        return TransferOutcome(delivered=True)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.write_ledger_entries,
            self.lookup_user_keys,
            self.operator_keys,
            self.deliver_transfer,
            self.ledger_public_key,
            self.start_credit_notes,
            self.sign_note_end,
        ]


async def test_open_hold_is_refunded_at_receipt_by_with_nobody_acting(
    time_env: WorkflowEnvironment,
) -> None:
    now = await time_env.get_current_time()
    alice = identity(now=now - timedelta(days=1))
    operator = identity("operator-t1m3r", now=now - timedelta(days=1))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    stubs = StubLedgerActivities(operator, alice)
    task_queue = f"tq-{uuid.uuid4().hex}"
    client = time_env.client
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AccountWorkflow, CreditNoteWorkflow],
        activities=stubs.all(),
    ):
        first = await client.start_workflow(
            AccountWorkflow.run,
            OpenAccountInput(account=account, owner=alice.name, continue_as_new_after=2),
            id=account_workflow_id(account),
            task_queue=task_queue,
        )
        order = sign_deposit(
            operator, account=account, amount="100.00", idempotency_key="opening", now=now
        )
        await first.execute_update(AccountWorkflow.deposit, order, id="opening")
        note = await first.execute_update(
            AccountWorkflow.cash_cheque,
            CashChequeInput(
                idempotency_key="cash",
                cheque=cheque(alice, account=account, now=now, valid_for=timedelta(hours=3)),
                spend=Decimal("30.00"),
                recipient="acct-provider",
                resource=RESOURCE,
                receipt_within_seconds=3600,
            ),
            id="cash",
        )
        # Two operations: the account continues as new with the hold open; the note's own
        # workflow keeps the timer.
        handle = client.get_workflow_handle(account_workflow_id(account))

        async def continued() -> bool:
            return (await handle.describe()).run_id != first.first_execution_run_id

        await wait_for(continued)
        await time_env.sleep(timedelta(minutes=59))
        view = await handle.query(AccountWorkflow.balance)
        assert isinstance(view, BalanceView)
        assert (view.held, view.open_holds) == (Decimal("30.00"), 1)
        await time_env.sleep(timedelta(minutes=2))
        view = await handle.query(AccountWorkflow.balance)
        assert (view.balance, view.held, view.available) == (Decimal("100.00"), 0, 100)
        assert view.open_holds == 0
        after = await handle.query(AccountWorkflow.state)
        note_handle = client.get_workflow_handle(credit_note_workflow_id(note.uid, account))
        assert (await note_handle.query(CreditNoteWorkflow.view)).status is HoldStatus.REFUNDED
        await handle.terminate("test over")
        await note_handle.terminate("test over")
    refunds = [e for e in after.recent if e.kind is EntryKind.AUTO_REFUND]
    assert [(e.reference, e.amount) for e in refunds] == [(note.uid, Decimal("30.00"))]
    assert refunds[0].at >= note.receipt_by
