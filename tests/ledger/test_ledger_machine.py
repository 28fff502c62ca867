"""Stateful property test of the ledger's pure state machines, wired as the workflows wire them.

Several funded accounts (:class:`AccountState`) cash cheques into credit notes, each kept by a
:class:`NoteState` as the note's own workflow keeps it once the account's note starter has
started it (a second cashing of its cheque is voided then), or, for a run from before the notes
patch, as a hold in the account's state. Notes are receipted, refunded or refunded
automatically at ``receipt_by`` on a simulated clock; each note's end reaches its account as a
``HoldClosed`` signal (serialised, sometimes delivered twice); receipted money travels as a
transfer credited to the recipient's account (or returned when there is none); accounts continue
as new, their state carried as JSON. A model kept by the test says what every answer must be.

After every step: money is conserved to the cent, each account's figures equal the model's and
re-add from its ledger entries, no account is below its overdraft limit, and every note has
ended at most once, as the model says. At the end, with nobody acting, every note has ended and
every transfer is delivered.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pydantic import BaseModel

from jobsheet.ledger.errors import (
    BAD_SIGNATURE,
    CHEQUE_ALREADY_CASHED,
    CHEQUE_EXPIRED,
    CREDIT_NOTE_CLOSED,
    INSUFFICIENT_FUNDS,
    NOT_ACCOUNT_OWNER,
    OVER_HELD,
    OVER_MAX_SPEND,
    UNKNOWN_CREDIT_NOTE,
    WRONG_ACCOUNT,
    WRONG_RECIPIENT,
    WRONG_RESOURCE,
)
from jobsheet.ledger.models import CloseKind, CreditNote, HoldClosed, HoldStatus, RefundResult
from jobsheet.ledger.state import CLOSED_HOLD_RETENTION, CREDIT_RETENTION, AccountState
from tests.ledger.factories import RESOURCE, readd

# The model's and the wiring's assertions are this test's: pytest explains them when they fail.
pytest.register_assert_rewrite("tests.ledger.ledger_model", "tests.ledger.ledger_wiring")

from tests.ledger.ledger_model import (  # noqa: E402
    ACCOUNTS,
    BUSY_STRETCH,
    CENT,
    CHEQUE_VALID_FOR,
    DEFECTS,
    GONE,
    IMPOSTORS,
    OPENING_CENTS,
    OTHER_RESOURCE,
    OWNERS,
    PAYERS,
    PROVIDER,
    RECEIPT_WITHIN,
    STATS,
    ZERO,
    Note,
    count,
    share_of,
)
from tests.ledger.ledger_wiring import WiredLedger  # noqa: E402

index = st.integers(min_value=0, max_value=1000)
RECEIPT_PERCENT = st.sampled_from((0, 1, 50, 99, 100)) | st.integers(0, 100)


class LedgerMachine(WiredLedger, RuleBasedStateMachine):
    """The rules and invariants; the model they check against is in ``ledger_model.py``, the
    steps they take, wired as the workflows wire them, in ``ledger_wiring.py``."""

    def __init__(self) -> None:
        super().__init__()
        for account in PAYERS:
            self.deposit(account, OPENING_CENTS, again=False)

    # --- the account's note starter --------------------------------------------------------

    @precondition(lambda self: self.starting_accounts())
    @rule(which=index, batch=st.integers(1, 4))
    def start_some_notes(self, which: int, batch: int) -> None:
        accounts = self.starting_accounts()
        self.start_notes(accounts[which % len(accounts)], batch)

    # --- deposits and cheques --------------------------------------------------------------

    @rule(account=st.sampled_from(PAYERS), cents=st.integers(5000, 200000), again=st.booleans())
    def deposit(self, account: str, cents: int, again: bool) -> None:
        book, key, amount = self.books[account], self.key("dep"), Decimal(cents).scaleb(-2)
        view = book.state.deposit(key, amount, self.now)
        book.balance += amount
        self.deposited += amount
        assert view.balance == book.balance
        answer = self.remember(
            book,
            None,
            "deposit",
            key,
            lambda: book.state.deposit(key, amount, self.now),
            result=view,
        )
        if again:
            self.repeat(answer)
        count("deposit")

    @rule(
        payer=st.sampled_from(PAYERS),
        max_cents=st.integers(100, 8000),
        percent=st.integers(1, 100),
        within=st.sampled_from(RECEIPT_WITHIN),
        used=st.none() | RECEIPT_PERCENT,
    )
    def run_job(
        self, payer: str, max_cents: int, percent: int, within: timedelta, used: int | None
    ) -> None:
        """The common case: a cheque to the provider cashed into a note of its own, and, once
        the job has run, the note receipted for ``used`` percent (None: the job still runs)."""
        note = self._cash(
            payer, PROVIDER, max_cents, percent, within, timedelta(hours=6), False, False
        )
        if note is not None and used is not None:
            # The provider's receipt waits for the note's workflow to start.
            self.start_notes(payer, len(self.books[payer].starting))
            self._receipt(self.notes[note.uid], used, False)

    @rule(
        payer=st.sampled_from(PAYERS),
        to=st.sampled_from((PROVIDER, *PAYERS, GONE)),
        max_cents=st.integers(100, 8000),
        percent=st.integers(1, 100),
        within=st.sampled_from(RECEIPT_WITHIN),
        valid_for=st.sampled_from(CHEQUE_VALID_FOR),
        legacy=st.integers(0, 2).map(lambda n: n == 0),
        again=st.booleans(),
    )
    def cash(
        self,
        payer: str,
        to: str,
        max_cents: int,
        percent: int,
        within: timedelta,
        valid_for: timedelta,
        legacy: bool,
        again: bool,
    ) -> None:
        """A cheque to any account (or to none), into a note or a hold in the account's state."""
        self._cash(payer, to, max_cents, percent, within, valid_for, legacy, again)

    @rule(
        payer=st.sampled_from(PAYERS),
        defect=st.sampled_from(DEFECTS),
        max_cents=st.integers(100, 8000),
        percent=st.integers(1, 100),
    )
    def cash_invalid(self, payer: str, defect: str, max_cents: int, percent: int) -> None:
        """A cheque with one thing wrong: refused with that thing's type, nothing changes."""
        max_spend, room = Decimal(max_cents).scaleb(-2), self.room(payer)
        spend = max(share_of(min(max_spend, room), percent), CENT)
        recipient, resource, account = PROVIDER, RESOURCE, payer
        cheque = self.write(payer, to=PROVIDER, max_spend=max_spend)
        if defect == "recipient":
            recipient, expected = GONE, WRONG_RECIPIENT
        elif defect == "resource":
            resource, expected = OTHER_RESOURCE, WRONG_RESOURCE
        elif defect == "expired":
            cheque = self.write(
                payer,
                to=PROVIDER,
                max_spend=max_spend,
                valid_for=timedelta(hours=1),
                signed_at=self.now - timedelta(hours=1, minutes=percent % 60),
            )
            expected = CHEQUE_EXPIRED
        elif defect == "max_spend":
            spend, expected = max_spend + share_of(max_spend, percent) + CENT, OVER_MAX_SPEND
        elif defect == "funds":
            spend = max(room, ZERO) + CENT + share_of(max_spend, percent)
            cheque = self.write(payer, to=PROVIDER, max_spend=spend)
            expected = INSUFFICIENT_FUNDS
        elif defect == "signature":
            if percent % 2:
                cheque = self.write(
                    payer, to=PROVIDER, max_spend=max_spend, signer=IMPOSTORS[payer]
                )
            else:
                cheque = cheque.model_copy(update={"max_spend": max_spend + 1})
            expected = BAD_SIGNATURE
        elif defect == "account":
            account = PAYERS[(PAYERS.index(payer) + 1) % len(PAYERS)]
            expected = WRONG_ACCOUNT
        else:
            other = PAYERS[(PAYERS.index(payer) + 1) % len(PAYERS)]
            cheque = self.write(payer, to=PROVIDER, max_spend=max_spend, signer=OWNERS[other])
            expected = NOT_ACCOUNT_OWNER
        book, key = self.books[account], self.key("bad-cash")

        def cash() -> CreditNote:
            return self.present(
                account, key, cheque, spend=spend, recipient=recipient, resource=resource
            )

        refusal = self.refused(expected, cash, account=book.state, key=key)
        self.remember(book, None, "cash", key, cash, refusal=refusal)

    @precondition(lambda self: self.cashed)
    @rule(which=index, percent=st.integers(1, 100))
    def cash_again(self, which: int, percent: int) -> None:
        """A cheque cashed before, presented again (with a new key): refused at once while the
        account remembers the cheque, else issued and then voided by the note's taken id."""
        cheques = list(self.cashed.values())
        cheque = cheques[which % len(cheques)]
        book, key = self.books[cheque.account], self.key("recash")
        room = self.room(cheque.account)
        if room < CENT:
            return
        spend = max(share_of(min(cheque.max_spend, room), percent), CENT)
        run = self.cheque_runs.get(cheque.uid)
        expected = None
        if self.now >= cheque.expires_at:
            expected = CHEQUE_EXPIRED
        elif run is None or book.run - run <= 1:
            expected = CHEQUE_ALREADY_CASHED

        def cash() -> CreditNote:
            return self.present(
                cheque.account, key, cheque, spend=spend, recipient=cheque.recipient
            )

        if expected is not None:
            refusal = self.refused(expected, cash, account=book.state, key=key)
            self.remember(book, None, "cash", key, cash, refusal=refusal)
        else:
            self.remember(book, None, "cash", key, cash, result=cash())
        count("cash again" if expected else "cash again, to be voided")

    # --- receipts and refunds --------------------------------------------------------------

    @precondition(lambda self: self.open_notes())
    @rule(which=index, percent=RECEIPT_PERCENT, again=st.booleans())
    def receipt(self, which: int, percent: int, again: bool) -> None:
        opened = self.open_notes()
        self._receipt(opened[which % len(opened)], percent, again)

    @precondition(lambda self: self.open_notes())
    @rule(which=index, over=st.sampled_from((CENT, Decimal("1.00"), Decimal("1000.00"))))
    def receipt_over_held(self, which: int, over: Decimal) -> None:
        opened = self.open_notes()
        note = opened[which % len(opened)]
        key, amount = self.key("receipt"), note.note.held + over
        book = self.books[note.note.account]
        self.refused(
            OVER_HELD,
            lambda: self.receipt_of(note, key, amount),
            account=book.state,
            note=note.state,
            key=key if note.legacy else None,
        )

    @precondition(lambda self: self.open_notes())
    @rule(which=index, again=st.booleans())
    def refund(self, which: int, again: bool) -> None:
        opened = self.open_notes()
        note = opened[which % len(opened)]
        key = self.key("refund")
        result = self.refund_of(note, key)
        assert result == RefundResult(credit_note_uid=note.note.uid, released=note.note.held)
        self.end(
            note, HoldClosed(note=note.note, kind=CloseKind.REFUND, paid=ZERO, idempotency_key=key)
        )
        answer = self.remember(
            self.note_book(note),
            note,
            "refund",
            key,
            lambda: self.refund_of(note, key),
            result=result,
        )
        if again:
            self.repeat(answer)
        count("refund")

    @precondition(lambda self: self.ended_notes())
    @rule(which=index, receipt=st.booleans(), percent=st.integers(0, 100), its_key=st.booleans())
    def act_on_ended(self, which: int, receipt: bool, percent: int, its_key: bool) -> None:
        """A receipt or refund of a note that has ended (with a new key, or with the key that
        ended it but asking the other thing) is refused CreditNoteClosed."""
        ended = self.ended_notes()
        note = ended[which % len(ended)]
        assert note.end is not None
        book = self.books[note.note.account]
        same = its_key and not note.legacy and note.end.kind is not CloseKind.AUTO_REFUND
        if same and (note.end.kind is CloseKind.RECEIPT) == receipt:
            receipt = not receipt
        key = note.end.idempotency_key if same else self.key("late")
        expected = CREDIT_NOTE_CLOSED
        if note.pruned:
            expected = UNKNOWN_CREDIT_NOTE
        amount = share_of(note.note.held, percent)

        def act() -> BaseModel:
            return self.receipt_of(note, key, amount) if receipt else self.refund_of(note, key)

        self.refused(
            expected, act, account=book.state, note=note.state, key=key if note.legacy else None
        )
        first = "receipt" if note.end.kind is CloseKind.RECEIPT else "refund"
        count(f"{'receipt' if receipt else 'refund'} after {first}")

    @precondition(lambda self: self.notes)
    @rule(which=index, how=st.sampled_from(("altered", "misrouted", "other account")))
    def act_on_unknown_note(self, which: int, how: str) -> None:
        """A note as nobody issued it (altered, sent to the wrong place) is refused."""
        notes = list(self.notes.values())
        note = notes[which % len(notes)]
        book, key = self.books[note.note.account], self.key("forged")
        if how == "other account":
            book = self.books[PAYERS[(PAYERS.index(note.note.account) + 1) % len(PAYERS)]]
            self.refused(
                WRONG_ACCOUNT,
                lambda: book.state.refund(key, note.note, self.now),
                account=book.state,
                key=key,
            )
        elif how == "misrouted" and not note.legacy:
            # A note kept by its own workflow is not the account's to receipt.
            self.refused(
                UNKNOWN_CREDIT_NOTE,
                lambda: book.state.receipt(key, note.note, ZERO, self.now),
                account=book.state,
                key=key,
            )
        else:
            forged = Note(
                note.note.model_copy(update={"held": note.note.held + 1}), note.cheque, note.state
            )
            self.refused(
                UNKNOWN_CREDIT_NOTE,
                lambda: self.receipt_of(forged, key, note.note.held),
                account=book.state,
                note=note.state,
                key=key if note.legacy else None,
            )

    # --- time ------------------------------------------------------------------------------

    @rule(minutes=st.integers(1, 30))
    def advance(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)
        self.fire_timers()

    # --- the notes' ends reach their accounts ----------------------------------------------

    @precondition(lambda self: self.signals)
    @rule(which=index)
    def deliver_end(self, which: int) -> None:
        closed = self.signals.pop(which % len(self.signals))
        note, book = self.notes[closed.note.uid], self.books[closed.note.account]
        delivered = HoldClosed.model_validate(closed.model_dump(mode="json"))
        assert book.state.close_note(delivered, self.now) is True
        self.apply_end(note)
        count("note's end applied")

    @precondition(lambda self: self.delivered_recently())
    @rule(which=index)
    def deliver_end_again(self, which: int) -> None:
        """The server delivers a note's end again: ``close_note`` ignores it."""
        notes = self.delivered_recently()
        note = notes[which % len(notes)]
        assert note.end is not None
        book = self.books[note.note.account]
        before = book.state.model_dump()
        assert (
            book.state.close_note(
                HoldClosed.model_validate(note.end.model_dump(mode="json")), self.now
            )
            is False
        )
        assert book.state.model_dump() == before
        count("note's end delivered again")

    @precondition(lambda self: self.signals)
    @rule(which=index, how=st.sampled_from(("over held", "other account")))
    def deliver_bad_end(self, which: int, how: str) -> None:
        """An end that cannot be this account's (paid above the hold, another account's note)
        changes nothing; the real end is still to come."""
        closed = self.signals[which % len(self.signals)]
        book = self.books[closed.note.account]
        if how == "over held":
            closed = closed.model_copy(update={"paid": closed.note.held + CENT})
            expected = OVER_HELD
        else:
            book = self.books[PAYERS[(PAYERS.index(closed.note.account) + 1) % len(PAYERS)]]
            expected = WRONG_ACCOUNT
        self.refused(expected, lambda: book.state.close_note(closed, self.now), account=book.state)

    # --- transfers -------------------------------------------------------------------------

    @precondition(lambda self: self.pending_flows())
    @rule(which=index, crash=st.booleans())
    def deliver_transfer(self, which: int, crash: bool) -> None:
        """The delivery loop: credit the recipient (keyed by the transfer id), then tell the
        payer; with ``crash`` the payer never hears, so the credit is sent again later."""
        flows = self.pending_flows()
        flow = flows[which % len(flows)]
        transfer, payer = flow.transfer, self.books[flow.transfer.from_account]
        if transfer.to_account not in self.books:
            payer.state.transfer_returned(transfer.transfer_id, self.now)
            payer.balance += transfer.amount
            flow.done = True
            count("transfer returned")
            return
        self.credit(flow)
        if not crash:
            payer.state.transfer_delivered(transfer.transfer_id, self.now)
            flow.done = True
            count("transfer delivered")

    @precondition(lambda self: self.done_flows())
    @rule(which=index)
    def deliver_transfer_again(self, which: int) -> None:
        """A delivery repeated after it was done (a retried activity): nothing changes."""
        flows = self.done_flows()
        flow = flows[which % len(flows)]
        transfer, payer = flow.transfer, self.books[flow.transfer.from_account]
        before = payer.state.model_dump()
        payer.state.transfer_delivered(transfer.transfer_id, self.now)
        payer.state.transfer_returned(transfer.transfer_id, self.now)
        assert payer.state.model_dump() == before
        if flow.credited_at is not None and self.now < flow.credited_at + CREDIT_RETENTION:
            self.credit(flow)

    # --- repeats and continue-as-new -------------------------------------------------------

    @precondition(lambda self: self.answers())
    @rule(which=index)
    def repeat_key(self, which: int) -> None:
        answers = self.answers()
        self.repeat(answers[which % len(answers)])

    @rule(account=st.sampled_from(ACCOUNTS))
    def continue_as_new(self, account: str) -> None:
        """As ``AccountWorkflow.run`` ends: start the notes issued, expire, prune, carry the
        state as JSON."""
        book = self.books[account]
        self.start_notes(account, len(book.starting))
        assert not book.state.notes_to_start
        assert book.state.expire_holds(self.now) == []  # the expiry loop is never late here
        book.state.prune(self.now)
        for note in self.ended_notes():
            if note.legacy and note.note.account == account and note.ended_at is not None:
                note.pruned = note.ended_at + CLOSED_HOLD_RETENTION <= self.now
        carried = AccountState.model_validate(book.state.model_dump(mode="json"))
        assert carried.model_dump() == book.state.model_dump()
        book.state, book.run, book.answers = carried, book.run + 1, []
        count("continue-as-new")

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        for account, book in self.books.items():
            state = book.state
            entries = state.take_unaudited()
            state.mark_audited(entries)
            book.entries.extend(entries)
            assert [e.seq for e in book.entries] == list(range(1, state.seq + 1))
            assert readd(book.entries) == (state.balance, state.held, state.in_flight)
            assert state.balance == book.balance
            assert state.held == self.held(account)
            assert state.notes_open == self.notes_open(account)
            assert [n.note.uid for n in state.notes_to_start] == [s.note.uid for s in book.starting]
            assert state.in_flight == sum(
                (
                    f.transfer.amount
                    for f in self.pending_flows()
                    if f.transfer.from_account == account
                ),
                ZERO,
            )
            assert state.available >= -state.overdraft_limit
            assert set(state.holds) == {
                n.note.uid
                for n in self.notes.values()
                if n.legacy and n.note.account == account and not n.pruned
            }
            for uid, hold in state.holds.items():
                note = self.notes[uid]
                expected = HoldStatus.OPEN
                if note.end is not None:
                    expected = (
                        HoldStatus.RECEIPTED
                        if note.end.kind is CloseKind.RECEIPT
                        else HoldStatus.REFUNDED
                    )
                assert hold.status is expected
                assert hold.paid == (note.end.paid if note.end is not None else ZERO)
        for note in self.notes.values():
            if note.state is not None:
                assert note.state.closed == note.end
                assert note.state.paid <= note.note.held
                if note.state.status is HoldStatus.REFUNDED:
                    assert note.state.paid == 0
        credited_not_told = sum(
            (f.transfer.amount for f in self.pending_flows() if f.credited_at is not None), ZERO
        )
        total = sum((b.state.balance + b.state.in_flight for b in self.books.values()), ZERO)
        assert total - credited_not_told == self.deposited

    @precondition(lambda self: len(self.notes) >= self.busy_until)
    @rule(hours=st.integers(24, 72))
    def quiet_spell(self, hours: int = 24) -> None:
        """After a busy stretch, a day or more with nobody acting: every note ends, every end
        and transfer is delivered, and nothing is left held or in flight."""
        self.busy_until = len(self.notes) + BUSY_STRETCH
        for account in ACCOUNTS:
            self.start_notes(account, len(self.books[account].starting))
        self.now += timedelta(hours=hours)
        self.fire_timers()
        while self.signals:
            self.deliver_end(0)
        while self.pending_flows():
            self.deliver_transfer(0, crash=False)
        self.books_balance()
        assert all(note.end is not None and note.applied for note in self.notes.values())
        for book in self.books.values():
            assert book.state.held == book.state.in_flight == book.state.notes_open == 0
        count("quiet spell")

    def teardown(self) -> None:
        # Every run ends with a quiet spell, unless a step failed (that is the failure to
        # report; ``teardown`` runs in the ``finally`` around the steps).
        if sys.exc_info()[0] is None:
            self.quiet_spell()


SETTINGS = settings(
    max_examples=400,
    stateful_step_count=80,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FLOORS = {
    "cash": 1000,
    "receipt": 1000,
    "refund": 200,
    "automatic refund": 300,
    "continue-as-new": 500,
    "note's end delivered again": 100,
    "cash voided by the note's id": 10,
    "transfer returned": 10,
}
"""At least this many steps of each kind in a run, so that the test cannot quietly weaken."""


def test_ledger_machine() -> None:
    STATS.clear()
    run_state_machine_as_test(LedgerMachine, settings=SETTINGS)
    short = {what: STATS[what] for what, floor in FLOORS.items() if STATS[what] < floor}
    print(dict(sorted(STATS.items())))
    assert not short, f"too few steps of these kinds: {short} (all: {dict(STATS)})"


# Let ``pytest --hypothesis-show-statistics`` report this run, as it does for a TestCase.
test_ledger_machine.is_hypothesis_test = True  # type: ignore[attr-defined]
