"""One credit note as a workflow of its own (``credit-note-<account>-<note uid>``).

The paying account starts it (through an activity, with a start input the ledger workers sign)
when it cashes a cheque, so the account keeps only totals however many holds are open. It is
started with a delay until ``receipt_by``, so an open note costs no workflow task (and no
worker memory) until then unless a receipt or refund wakes it. The note
is receipted or refunded by its updates, or refunded automatically by its own timer at
``receipt_by``; whichever comes first decides, once. It then tells the account with a signal
the ledger workers sign only for a note they issued (a bare Temporal client cannot release money
the account never held), and stays until its cheque has expired, so that its id, which names
the cheque, refuses a second cashing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from jobsheet.contracts.refusals import Refusal
    from jobsheet.ledger.credit_note import NoteState
    from jobsheet.ledger.models import (
        CREDIT_NOTE_WORKFLOW,
        HOLD_CLOSED_SIGNAL,
        NoteInput,
        NoteView,
        ReceiptInput,
        ReceiptResult,
        RefundInput,
        RefundResult,
        SignNoteEndInput,
        account_workflow_id,
    )
    from jobsheet.ledger.state import CHEQUE_GRACE

SIGN_TIMEOUT = timedelta(seconds=10)


@workflow.defn(name=CREDIT_NOTE_WORKFLOW)
class CreditNoteWorkflow:
    """Holds one credit note until it is receipted, refunded or refunded automatically."""

    @workflow.init
    def __init__(self, request: NoteInput) -> None:
        self._start = request
        self._state = NoteState(note=request.note, cash_key=request.cash_key)
        self._telling: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, request: NoteInput) -> NoteView:
        # Started with a delay until receipt_by: the first task comes then, or earlier with a
        # receipt or refund.
        due = request.note.receipt_by - workflow.now()
        try:
            if due > timedelta(0):
                await workflow.wait_condition(
                    lambda: self._state.closed is not None,
                    timeout=due,
                    timeout_summary="automatic refund at receipt_by",
                )
        except TimeoutError:
            pass
        self._state.expire(workflow.now())
        await self._tell_account()
        guard = request.cheque_expires_at + CHEQUE_GRACE - workflow.now()
        if guard > timedelta(0):
            await workflow.sleep(guard, summary="keep the cheque from a second cashing")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state.view()

    async def _tell_account(self) -> None:
        """Send the note's end to the paying account, once, however many callers wait."""
        if self._telling is None:
            self._telling = asyncio.create_task(self._send_end())
        await asyncio.shield(self._telling)

    async def _send_end(self) -> None:
        closed = self._state.closed
        assert closed is not None
        signed = await workflow.execute_local_activity_method(
            LedgerActivities.sign_note_end,
            SignNoteEndInput(note=self._start, closed=closed),
            start_to_close_timeout=SIGN_TIMEOUT,
        )
        account = workflow.get_external_workflow_handle(account_workflow_id(closed.note.account))
        await account.signal(HOLD_CLOSED_SIGNAL, signed)

    @workflow.query
    def view(self) -> NoteView:
        return self._state.view()

    @workflow.update
    async def receipt(self, request: ReceiptInput) -> ReceiptResult:
        """Take ``amount`` of the note for its recipient; the rest returns to the payer."""
        try:
            result = self._state.receipt(
                request.idempotency_key, request.credit_note, request.amount, workflow.now()
            )
        except Refusal as exc:
            raise exc.to_application_error() from None
        await self._tell_account()
        return result

    @receipt.validator
    def _validate_receipt(self, request: ReceiptInput) -> None:
        try:
            self._state.check(request.credit_note, request.idempotency_key)
        except Refusal as exc:
            raise exc.to_application_error() from None

    @workflow.update
    async def refund(self, request: RefundInput) -> RefundResult:
        """Return the whole held value to the payer."""
        try:
            result = self._state.refund(
                request.idempotency_key, request.credit_note, workflow.now()
            )
        except Refusal as exc:
            raise exc.to_application_error() from None
        await self._tell_account()
        return result

    @refund.validator
    def _validate_refund(self, request: RefundInput) -> None:
        try:
            self._state.check(request.credit_note, request.idempotency_key)
        except Refusal as exc:
            raise exc.to_application_error() from None
