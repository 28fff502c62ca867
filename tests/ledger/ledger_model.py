"""The ledger as the stateful test expects it: fixed accounts and identities, what the test
knows of every credit note, transfer and answer, and the queries the rules ask of it.

:class:`LedgerModel` is kept by the test alone, apart from the ledger's own state machines, so
that it can say what every answer must be (see ``test_ledger_machine.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import event
from pydantic import BaseModel

from jobsheet.identity.keys import Identity
from jobsheet.ledger.cheque import Cheque, write_cheque
from jobsheet.ledger.credit_note import NoteState
from jobsheet.ledger.models import CreditNote, HoldClosed, LedgerEntry, ReceiptResult, Transfer
from jobsheet.ledger.state import AccountState
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


class LedgerModel:
    """What the test expects of the ledger: every account's book, note and transfer, on a
    simulated clock."""

    def __init__(self) -> None:
        super().__init__()  # cooperative: in the state machine, RuleBasedStateMachine's own
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

    def starting_accounts(self) -> list[str]:
        return [account for account, book in self.books.items() if book.starting]

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

    def expected_receipt(self, note: CreditNote, paid: Decimal) -> ReceiptResult:
        return ReceiptResult(
            credit_note_uid=note.uid,
            paid=paid,
            released=note.held - paid,
            transfer_id=f"tr-{note.uid}" if paid > 0 else None,
        )

    def note_book(self, note: Note) -> Book | None:
        """Whose memory answers a repeat: the account's for a hold in its state."""
        return self.books[note.note.account] if note.legacy else None

    def delivered_recently(self) -> list[Note]:
        """Notes whose end their account applied in this run or the one before: the window in
        which the server may deliver the same signal again. (The account remembers settled
        notes for two runs only; a copy arriving later is applied again.)"""
        return [
            n
            for n in self.notes.values()
            if n.applied and not n.legacy and self.books[n.note.account].run - n.applied_run <= 1
        ]

    def pending_flows(self) -> list[Flow]:
        return [flow for flow in self.flows.values() if not flow.done]

    def done_flows(self) -> list[Flow]:
        return [flow for flow in self.flows.values() if flow.done]

    def answers(self) -> list[Answer]:
        return [a for book in self.books.values() for a in book.answers] + self.note_answers
