"""The automatic refund at ``receipt_by`` on the time-skipping server, with nobody acting."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from jobsheet.identity import PublicKeyRecord
from jobsheet.ledger.models import (
    AuditInput,
    BalanceView,
    EntryKind,
    KeysLookupInput,
    LedgerEntry,
    Transfer,
    TransferOutcome,
    account_workflow_id,
)
from jobsheet.ledger.state import AccountState
from tests.ledger.factories import RESOURCE, cheque, identity
from workflows.account import AccountWorkflow, OpenAccountInput


class StubLedgerActivities:
    """The account workflow's activities without Temporal clients or S3: the audit trail in memory."""

    def __init__(self) -> None:
        self.audited: list[LedgerEntry] = []

    @activity.defn(name="write_ledger_entries")
    async def write_ledger_entries(self, request: AuditInput) -> int:
        self.audited += request.entries
        return len(request.entries)

    @activity.defn(name="lookup_user_keys")
    async def lookup_user_keys(self, request: KeysLookupInput) -> list[PublicKeyRecord]:
        return []

    @activity.defn(name="deliver_transfer")
    async def deliver_transfer(self, transfer: Transfer) -> TransferOutcome:
        return TransferOutcome(delivered=True)


async def test_open_hold_is_refunded_at_receipt_by_with_nobody_acting(
    time_env: WorkflowEnvironment,
) -> None:
    now = await time_env.get_current_time()
    alice = identity(now=now - timedelta(days=1))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    state = AccountState(account=account, owner=alice.name)
    state.deposit("opening", Decimal("100.00"), now)
    note = state.cash_cheque(
        "cash",
        cheque(alice, account=account, now=now, valid_for=timedelta(hours=3)),
        spend=Decimal("30.00"),
        recipient="acct-provider",
        resource=RESOURCE,
        receipt_within=timedelta(hours=1),
        keys=[alice.public_record()],
        now=now,
    )
    stubs = StubLedgerActivities()
    task_queue = f"tq-{uuid.uuid4().hex}"
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[AccountWorkflow],
        activities=[stubs.write_ledger_entries, stubs.lookup_user_keys, stubs.deliver_transfer],
    ):
        # Started with carried state, as after continue-as-new: the timer must be re-armed.
        handle = await time_env.client.start_workflow(
            AccountWorkflow.run,
            OpenAccountInput(account=account, owner=alice.name, state=state),
            id=account_workflow_id(account),
            task_queue=task_queue,
        )
        await time_env.sleep(timedelta(minutes=59))
        view = await handle.query(AccountWorkflow.balance)
        assert isinstance(view, BalanceView)
        assert (view.held, view.open_holds) == (Decimal("30.00"), 1)
        await time_env.sleep(timedelta(minutes=2))
        view = await handle.query(AccountWorkflow.balance)
        assert (view.balance, view.held, view.available) == (Decimal("100.00"), 0, 100)
        assert view.open_holds == 0
        after = await handle.query(AccountWorkflow.state)
        assert after.holds[note.uid].status == "refunded"
        await handle.terminate("test over")
    refunds = [e for e in after.recent if e.kind is EntryKind.AUTO_REFUND]
    assert [(e.reference, e.amount) for e in refunds] == [(note.uid, Decimal("30.00"))]
    assert refunds[0].at >= note.receipt_by
