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

import dataclasses
import hashlib
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pydantic import BaseModel

from jobsheet.cheque import Cheque, write_cheque
from jobsheet.identity import Identity
from jobsheet.ledger.credit_note import NoteState
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
    Refused,
)
from jobsheet.ledger.models import (
    CloseKind,
    CreditNote,
    HoldClosed,
    HoldStatus,
    LedgerEntry,
    ReceiptResult,
    RefundResult,
    Transfer,
    credit_note_workflow_id,
)
from jobsheet.ledger.state import (
    CLOSED_HOLD_RETENTION,
    CREDIT_RETENTION,
    AccountState,
    readd,
)
from tests.ledger.factories import RESOURCE, T0

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
PAYERS = ("acct-0", "acct-1", "acct-2")
PROVIDER = "acct-provider"
GONE = "acct-gone"
"""A recipient with no account: transfers to it come back to the payer."""
ACCOUNTS = (*PAYERS, PROVIDER)
LIMITS = {"acct-0": ZERO, "acct-1": Decimal("50.00"), "acct-2": ZERO, PROVIDER: ZERO}
OPENING_CENTS = 50000
BUSY_STRETCH = 20
"""Notes cashed between two quiet spells."""
OTHER_RESOURCE = "sha256:" + "cd" * 32
RECEIPT_WITHIN = (timedelta(minutes=10), timedelta(hours=2), timedelta(hours=12))
CHEQUE_VALID_FOR = (timedelta(minutes=30), timedelta(hours=2), timedelta(hours=12))
DEFECTS = (
    "recipient",
    "resource",
    "expired",
    "max_spend",
    "funds",
    "signature",
    "account",
    "drawer",
)
STATS: Counter[str] = Counter()
"""Steps of each kind over a whole run (hypothesis events only say in how many examples)."""


def fixed_identity(name: str) -> Identity:
    """An identity whose key is derived from its name, so that every run is the same."""
    seed = hashlib.sha256(f"ledger-machine/{name}".encode()).digest()
    return Identity(name, Ed25519PrivateKey.from_private_bytes(seed), T0 - timedelta(days=1))


OWNERS = {account: fixed_identity(f"owner-{account}") for account in ACCOUNTS}
IMPOSTORS = {
    account: dataclasses.replace(fixed_identity(f"impostor-{account}"), name=OWNERS[account].name)
    for account in ACCOUNTS
}
"""Each owner's name with a key the owner never registered."""


def share_of(amount: Decimal, percent: int) -> Decimal:
    return (amount * percent / 100).quantize(CENT, rounding=ROUND_DOWN)


def count(what: str) -> None:
    STATS[what] += 1
    event(what)


@dataclass
class Note:
    """A credit note as the test knows it."""

    note: CreditNote
    cheque: Cheque
    state: NoteState | None
    """The note's own workflow; None for a hold kept in the account's state (before the patch)."""
    end: HoldClosed | None = None
    """How it ended, as first decided: it never changes afterwards."""
    applied: bool = False
    """Whether the account has applied the end (at once for a hold in the account's state)."""
    applied_run: int = 0
    ended_at: datetime | None = None
    pruned: bool = False
    """A hold in the account's state that a continue-as-new has forgotten (a day after it ended)."""

    @property
    def legacy(self) -> bool:
        return self.state is None


@dataclass
class Answer:
    """A request answered before, to send again under the same key: same answer, no change."""

    what: str
    key: str
    redo: Callable[[], BaseModel]
    result: BaseModel | None
    refusal: str | None
    states: Callable[[], list[BaseModel]]


@dataclass
class Book:
    """One account: its state as the workflow carries it, and what the test expects of it."""

    state: AccountState
    balance: Decimal = ZERO
    run: int = 0
    answers: list[Answer] = field(default_factory=list)
    """This run's answers (a short memory: the state forgets keys as it continues as new)."""
    entries: list[LedgerEntry] = field(default_factory=list)
    """Every ledger entry the account emitted, as the audit trail keeps them."""
    starting: list[Starting] = field(default_factory=list)
    """Notes issued whose workflows the account's note starter has not started yet."""


@dataclass
class Starting:
    """A note issued by a cashing, its workflow not started yet."""

    note: CreditNote
    key: str
    cheque: Cheque


@dataclass
class Flow:
    """Money a receipt took from the payer, on its way to the recipient."""

    transfer: Transfer
    credited_at: datetime | None = None
    done: bool = False


index = st.integers(min_value=0, max_value=1000)
RECEIPT_PERCENT = st.sampled_from((0, 1, 50, 99, 100)) | st.integers(0, 100)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.deposited = ZERO
        self.books = {
            account: Book(
                AccountState(
                    account=account, owner=OWNERS[account].name, overdraft_limit=LIMITS[account]
                )
            )
            for account in ACCOUNTS
        }
        self.notes: dict[str, Note] = {}
        self.cashed: dict[str, Cheque] = {}
        """Every cheque cashed, to present again."""
        self.cheque_runs: dict[str, int] = {}
        """The account's run that last cashed each cheque into a note (it remembers two runs)."""
        self.started: set[str] = set()
        """Ids of every credit note workflow started (the id reuse policy rejects them again)."""
        self.signals: list[HoldClosed] = []
        """Ends sent by notes to their accounts, not delivered yet."""
        self.flows: dict[str, Flow] = {}
        self.note_answers: list[Answer] = []
        """Answers of the notes' own workflows (which remember them for the note's life)."""
        self.serial = 0
        self.busy_until = BUSY_STRETCH
        for account in PAYERS:
            self.deposit(account, OPENING_CENTS, again=False)

    # --- helpers ---------------------------------------------------------------------------

    def key(self, what: str) -> str:
        self.serial += 1
        return f"{what}-{self.serial}"

    def open_notes(self) -> list[Note]:
        return [note for note in self.notes.values() if note.end is None]

    def ended_notes(self) -> list[Note]:
        return [note for note in self.notes.values() if note.end is not None]

    def held(self, account: str) -> Decimal:
        kept = (n.note for n in self.notes.values() if n.note.account == account and not n.applied)
        starting = (s.note for s in self.books[account].starting)
        return sum((note.held for note in (*kept, *starting)), ZERO)

    def notes_open(self, account: str) -> int:
        kept = [n for n in self.notes.values() if n.note.account == account and not n.legacy]
        return sum(not n.applied for n in kept) + len(self.books[account].starting)

    def room(self, account: str) -> Decimal:
        """What the account may still hold: available plus its overdraft limit."""
        return self.books[account].balance - self.held(account) + LIMITS[account]

    def write(
        self,
        payer: str,
        *,
        to: str,
        max_spend: Decimal,
        valid_for: timedelta = timedelta(hours=2),
        signer: Identity | None = None,
        signed_at: datetime | None = None,
    ) -> Cheque:
        return write_cheque(
            signer or OWNERS[payer],
            account=payer,
            recipient=to,
            resource=RESOURCE,
            max_spend=max_spend,
            now=signed_at or self.now,
            valid_for=valid_for,
            uid=self.key("chq"),
        )

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

    def starting_accounts(self) -> list[str]:
        return [account for account, book in self.books.items() if book.starting]

    @precondition(lambda self: self.starting_accounts())
    @rule(which=index, batch=st.integers(1, 4))
    def start_some_notes(self, which: int, batch: int) -> None:
        accounts = self.starting_accounts()
        self.start_notes(accounts[which % len(accounts)], batch)

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
        except Refused as exc:
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

    def expected_receipt(self, note: CreditNote, paid: Decimal) -> ReceiptResult:
        return ReceiptResult(
            credit_note_uid=note.uid,
            paid=paid,
            released=note.held - paid,
            transfer_id=f"tr-{note.uid}" if paid > 0 else None,
        )

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

    @staticmethod
    def figures(state: AccountState) -> tuple[object, ...]:
        return (state.balance, state.held, state.in_flight, state.notes_open, state.transfers)

    # --- receipts and refunds --------------------------------------------------------------

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

    def note_book(self, note: Note) -> Book | None:
        """Whose memory answers a repeat: the account's for a hold in its state."""
        return self.books[note.note.account] if note.legacy else None

    @precondition(lambda self: self.open_notes())
    @rule(which=index, percent=RECEIPT_PERCENT, again=st.booleans())
    def receipt(self, which: int, percent: int, again: bool) -> None:
        opened = self.open_notes()
        self._receipt(opened[which % len(opened)], percent, again)

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

    def delivered_recently(self) -> list[Note]:
        """Notes whose end their account applied in this run or the one before: the window in
        which the server may deliver the same signal again. (The account remembers settled
        notes for two runs only; a copy arriving later is applied again.)"""
        return [
            n
            for n in self.notes.values()
            if n.applied and not n.legacy and self.books[n.note.account].run - n.applied_run <= 1
        ]

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

    def pending_flows(self) -> list[Flow]:
        return [flow for flow in self.flows.values() if not flow.done]

    def done_flows(self) -> list[Flow]:
        return [flow for flow in self.flows.values() if flow.done]

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

    def answers(self) -> list[Answer]:
        return [a for book in self.books.values() for a in book.answers] + self.note_answers

    @precondition(lambda self: self.answers())
    @rule(which=index)
    def repeat_key(self, which: int) -> None:
        answers = self.answers()
        self.repeat(answers[which % len(answers)])

    def repeat(self, answer: Answer) -> None:
        before = [s.model_dump() for s in answer.states()]
        try:
            result = answer.redo()
        except Refused as exc:
            assert exc.type == answer.refusal, (
                f"{answer.what} repeated: {exc.type}, was {answer.refusal}"
            )
        else:
            assert answer.refusal is None, f"{answer.what} repeated: {result}, was {answer.refusal}"
            assert result == answer.result
        assert [s.model_dump() for s in answer.states()] == before
        count(f"{answer.what} repeated")

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
