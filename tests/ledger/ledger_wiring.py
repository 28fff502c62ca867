"""The ledger's pure state machines driven as the workflows drive them, every answer checked
against :class:`~tests.ledger.ledger_model.LedgerModel`.

:class:`WiredLedger` cashes cheques as ``AccountWorkflow.cash_cheque`` does, starts notes as the
account's note starter does, fires the notes' timers and the accounts' expiry loops, ends notes,
credits transfers, and expects refusals and repeated answers to change nothing. The rules of the
state machine (``test_ledger_machine.py``) are built from these steps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel

from jobsheet.contracts.refusals import Refusal
from jobsheet.ledger.cheque import Cheque
from jobsheet.ledger.credit_note import NoteState
from jobsheet.ledger.errors import CHEQUE_ALREADY_CASHED, INSUFFICIENT_FUNDS
from jobsheet.ledger.models import (
    CloseKind,
    CreditNote,
    HoldClosed,
    ReceiptResult,
    RefundResult,
    credit_note_workflow_id,
)
from jobsheet.ledger.state import AccountState
from tests.ledger.factories import RESOURCE
from tests.ledger.ledger_model import (
    CENT,
    OWNERS,
    PROVIDER,
    RECEIPT_WITHIN,
    ZERO,
    Answer,
    Book,
    Flow,
    LedgerModel,
    Note,
    Starting,
    count,
    share_of,
)


class WiredLedger(LedgerModel):
    """The steps the state machine's rules take, each checked against the model."""

    # --- cashing and the note starter ------------------------------------------------------

    def present(
        self,
        account: str,
        key: str,
        cheque: Cheque,
        *,
        spend: Decimal,
        recipient: str,
        resource: str = RESOURCE,
        within: timedelta = RECEIPT_WITHIN[1],
        legacy: bool = False,
    ) -> CreditNote:
        """Cash ``cheque`` at ``account`` as ``AccountWorkflow.cash_cheque`` does: hold and issue
        the note at once, its workflow started later by the account's note starter
        (:meth:`start_notes`), or, in a run from before the notes patch, hold it in the
        account's state."""
        book = self.books[account]
        seen = book.state.has_seen(key)
        note = book.state.cash_cheque(
            key,
            cheque,
            spend=spend,
            recipient=recipient,
            resource=resource,
            receipt_within=within,
            keys=[OWNERS[account].public_record()],
            now=self.now,
            note_workflow=not legacy,
        )
        if seen:
            return note
        assert note.uid == f"cn-{cheque.uid}" and note.held == spend <= cheque.max_spend
        assert (note.account, note.recipient, note.resource) == (account, recipient, resource)
        assert note.receipt_by == self.now + within
        self.cashed.setdefault(cheque.uid, cheque)
        if legacy:
            assert note.uid not in self.notes  # a cheque is never held twice
            self.notes[note.uid] = Note(note, cheque, None)
        else:
            self.cheque_runs[cheque.uid] = book.run
            book.starting.append(Starting(note, key, cheque))
        return note

    def start_notes(self, account: str, batch: int) -> None:
        """The account's note starter: start the workflows of the next ``batch`` notes issued (an
        activity); a note whose workflow id is taken (its cheque has a note already) is voided,
        and its cashing becomes that refusal."""
        book = self.books[account]
        todo, book.starting = book.starting[:batch], book.starting[batch:]
        for starting in todo:
            workflow_id = credit_note_workflow_id(starting.note.uid, account)
            if workflow_id in self.started:
                book.state.void_note(starting.key, starting.note, self.now)
                assert book.state.remembered[starting.key].refusal_type == CHEQUE_ALREADY_CASHED
                for answer in book.answers:
                    if answer.key == starting.key:
                        answer.result, answer.refusal = None, CHEQUE_ALREADY_CASHED
                count("cash voided by the note's id")
                continue
            self.started.add(workflow_id)
            book.state.note_started(starting.note.uid)
            assert starting.note.uid not in self.notes  # a cheque is never held twice
            note = Note(
                starting.note, starting.cheque, NoteState(note=starting.note, cash_key=starting.key)
            )
            self.notes[note.note.uid] = note
            count("note started")
            self.fire_timer(note)  # started with a delay until receipt_by, maybe past already

    def _cash(
        self,
        payer: str,
        to: str,
        max_cents: int,
        percent: int,
        within: timedelta,
        valid_for: timedelta,
        legacy: bool,
        again: bool,
    ) -> CreditNote | None:
        """A valid cheque: cashed if the account has room for it, else InsufficientFunds."""
        to = PROVIDER if to == payer else to
        max_spend, room = Decimal(max_cents).scaleb(-2), self.room(payer)
        spend = max(share_of(min(max_spend, room), percent), CENT)
        cheque = self.write(payer, to=to, max_spend=max_spend, valid_for=valid_for)
        book, key = self.books[payer], self.key("cash")

        def cash() -> CreditNote:
            return self.present(
                payer, key, cheque, spend=spend, recipient=to, within=within, legacy=legacy
            )

        note = None
        if spend > room:
            refusal = self.refused(INSUFFICIENT_FUNDS, cash, account=book.state, key=key)
            answer = self.remember(book, None, "cash", key, cash, refusal=refusal)
        else:
            note = cash()
            answer = self.remember(book, None, "cash", key, cash, result=note)
            count("cash (before the notes patch)" if legacy else "cash")
        if again:
            self.repeat(answer)
        return note

    # --- answers, refusals and repeats -----------------------------------------------------

    def refused(
        self,
        expected: str | set[str],
        call: Callable[[], object],
        *,
        account: AccountState | None = None,
        note: NoteState | None = None,
        key: str | None = None,
    ) -> str:
        """Call, expecting a refusal of an ``expected`` type that changes nothing (but for the
        account remembering the refusal under ``key``)."""
        types = {expected} if isinstance(expected, str) else expected
        states = [s for s in (account, note) if s is not None]
        before = [s.model_dump(exclude={"remembered"}) for s in states]
        try:
            answer = call()
        except Refusal as exc:
            assert exc.type in types, f"refused {exc.type} ({exc.message}), expected {types}"
            refusal = exc.type
        else:
            raise AssertionError(f"expected a refusal {types}, got {answer!r}")
        assert [s.model_dump(exclude={"remembered"}) for s in states] == before
        if account is not None and key is not None:
            assert account.remembered[key].refusal_type == refusal
        count(f"refused {refusal}")
        return refusal

    def remember(
        self,
        book: Book | None,
        note: Note | None,
        what: str,
        key: str,
        redo: Callable[[], BaseModel],
        *,
        result: BaseModel | None = None,
        refusal: str | None = None,
    ) -> Answer:
        def states() -> list[BaseModel]:
            account = [] if book is None else [book.state]
            own = [] if note is None or note.state is None else [note.state]
            return [*account, *own]

        answer = Answer(what, key, redo, result, refusal, states)
        (self.note_answers if book is None else book.answers).append(answer)
        return answer

    def repeat(self, answer: Answer) -> None:
        before = [s.model_dump() for s in answer.states()]
        try:
            result = answer.redo()
        except Refusal as exc:
            assert exc.type == answer.refusal, (
                f"{answer.what} repeated: {exc.type}, was {answer.refusal}"
            )
        else:
            assert answer.refusal is None, f"{answer.what} repeated: {result}, was {answer.refusal}"
            assert result == answer.result
        assert [s.model_dump() for s in answer.states()] == before
        count(f"{answer.what} repeated")

    # --- receipts, refunds and ends --------------------------------------------------------

    def receipt_of(self, note: Note, key: str, amount: Decimal) -> ReceiptResult:
        """A receipt as the client sends it: to the note's workflow, or to the account for a
        hold kept in the account's state."""
        if note.state is None:
            return self.books[note.note.account].state.receipt(key, note.note, amount, self.now)
        return note.state.receipt(key, note.note, amount, self.now)

    def refund_of(self, note: Note, key: str) -> RefundResult:
        if note.state is None:
            return self.books[note.note.account].state.refund(key, note.note, self.now)
        return note.state.refund(key, note.note, self.now)

    def _receipt(self, note: Note, percent: int, again: bool) -> None:
        """A receipt within the hold of an open note must succeed, once."""
        key, amount = self.key("receipt"), share_of(note.note.held, percent)
        result = self.receipt_of(note, key, amount)
        assert result == self.expected_receipt(note.note, amount)
        self.end(
            note,
            HoldClosed(note=note.note, kind=CloseKind.RECEIPT, paid=amount, idempotency_key=key),
        )
        answer = self.remember(
            self.note_book(note),
            note,
            "receipt",
            key,
            lambda: self.receipt_of(note, key, amount),
            result=result,
        )
        if again:
            self.repeat(answer)
        count("receipt" if amount else "receipt of nothing")

    def end(self, note: Note, closed: HoldClosed) -> None:
        """The note has ended: its workflow tells the account; a hold in the account's state
        has ended there already."""
        assert note.end is None, f"{note.note.uid} ended twice: {note.end} then {closed}"
        note.end, note.ended_at = closed, self.now
        if note.legacy:
            self.apply_end(note)
        else:
            self.signals.append(closed)

    def apply_end(self, note: Note) -> None:
        end, book = note.end, self.books[note.note.account]
        assert end is not None and not note.applied
        note.applied, note.applied_run = True, book.run
        if end.kind is CloseKind.RECEIPT and end.paid > 0:
            transfer_id = f"tr-{note.note.uid}"
            assert transfer_id not in self.flows, f"transfer {transfer_id} issued twice"
            [transfer] = [t for t in book.state.transfers if t.transfer_id == transfer_id]
            assert (transfer.from_account, transfer.to_account, transfer.amount) == (
                note.note.account,
                note.note.recipient,
                end.paid,
            )
            self.flows[transfer_id] = Flow(transfer)
            book.balance -= end.paid

    # --- time and transfers ----------------------------------------------------------------

    def fire_timers(self) -> None:
        """Every started note's timer, and each account's expiry loop for holds in its state."""
        for note in self.open_notes():
            self.fire_timer(note)
        for account, book in self.books.items():
            falling_due = {
                n.note.uid
                for n in self.open_notes()
                if n.legacy and n.note.account == account and n.note.receipt_by <= self.now
            }
            expired = book.state.expire_holds(self.now)
            assert {r.credit_note_uid for r in expired} == falling_due
            for result in expired:
                note = self.notes[result.credit_note_uid]
                assert result.released == note.note.held
                key = f"auto-refund-{note.note.uid}"
                self.end(
                    note,
                    HoldClosed(
                        note=note.note, kind=CloseKind.AUTO_REFUND, paid=ZERO, idempotency_key=key
                    ),
                )
                count("automatic refund (before the notes patch)")

    def fire_timer(self, note: Note) -> None:
        """The timer of a note's workflow: an automatic refund at ``receipt_by``."""
        if note.state is None or note.end is not None:
            return
        due = note.note.receipt_by <= self.now
        before = note.state.model_dump()
        assert note.state.expire(self.now) is due
        if due:
            assert note.state.closed is not None
            self.end(note, note.state.closed)
            count("automatic refund")
        else:
            assert note.state.model_dump() == before

    def credit(self, flow: Flow) -> None:
        transfer, recipient = flow.transfer, self.books[flow.transfer.to_account]
        before = recipient.state.model_dump()
        view = recipient.state.credit(
            transfer.transfer_id, transfer.from_account, transfer.amount, "", self.now
        )
        if flow.credited_at is None:
            recipient.balance += transfer.amount
            flow.credited_at = self.now
            assert view.balance == recipient.balance
            count("credit")
        else:
            assert recipient.state.model_dump() == before
            count("credit again")
