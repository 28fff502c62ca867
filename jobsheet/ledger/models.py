"""The ledger's boundary models: inputs and results of account updates, activities and queries.

One input model per operation, each with its own ``idempotency_key``: the same key applied twice
gives the first answer again and changes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from jobsheet.core.canonical import as_utc_or_none
from jobsheet.core.money import Money, NonNegativeMoney, PositiveMoney
from jobsheet.ledger.cheque import Cheque

DEFAULT_RECEIPT_WITHIN_SECONDS = 2 * 3600
MAX_RECEIPT_WITHIN_SECONDS = 7 * 24 * 3600


def account_workflow_id(account: str) -> str:
    """The id of the workflow that keeps account ``account``'s ledger."""
    return f"account-{account}"


def note_uid_for(cheque_uid: str) -> str:
    """The uid of the credit note that cashing cheque ``cheque_uid`` issues (one per cheque)."""
    return f"cn-{cheque_uid}"


def transfer_id_for(note_uid: str) -> str:
    """The id of the transfer that carries a receipt of note ``note_uid`` to its recipient."""
    return f"tr-{note_uid}"


def credit_note_workflow_id(note_uid: str, account: str) -> str:
    """The id of the workflow that keeps one credit note (and so guards its cheque: a second
    cashing of the cheque finds this id taken)."""
    return f"credit-note-{account}-{note_uid}"


class CreditNote(BaseModel):
    """A held value owed by ``account`` to ``recipient``, to receipt or refund by ``receipt_by``."""

    uid: str
    account: str
    recipient: str
    resource: str
    cheque_uid: str
    held: PositiveMoney
    issued_at: AwareDatetime
    receipt_by: AwareDatetime
    job_uid: str = ""
    """The job sheet this hold pays for ("" when the cashing named no job)."""


class HoldStatus(StrEnum):
    OPEN = "open"
    RECEIPTED = "receipted"
    REFUNDED = "refunded"


class CloseKind(StrEnum):
    RECEIPT = "receipt"
    REFUND = "refund"
    AUTO_REFUND = "auto_refund"


HOLD_CLOSED_SIGNAL = "hold_closed"
"""The signal a credit note's workflow sends its paying account when the note ends."""


class HoldClosed(BaseModel):
    """A credit note's end, sent by its workflow to the paying account (a signal): ``paid``
    of ``note.held`` goes to the recipient, the rest back to the payer.

    ``signature`` is the ledger workers' (``jobsheet.ledger.orders.sign_hold_closed``) over
    every other field, so that a bare Temporal client cannot release money it never held.
    """

    note: CreditNote
    kind: CloseKind
    paid: NonNegativeMoney
    idempotency_key: str
    signature: str = ""


CREDIT_NOTE_WORKFLOW = "CreditNoteWorkflow"
"""The workflow type that keeps one credit note (started by an activity of its account)."""


class NoteInput(BaseModel):
    """Start input of a credit note's workflow, which its account starts through an activity.

    ``signature`` is the ledger workers' over every other field: only a note its account issued
    gets its end signed for that account (``jobsheet.ledger.orders.sign_note``).
    """

    note: CreditNote
    cash_key: str
    """The idempotency key of the cashing that placed the hold (a repeat gets this note)."""
    cheque_expires_at: AwareDatetime
    """Until then (and a grace period) the note's workflow stays, so that its id, which names
    the cheque, refuses a second cashing."""
    signature: str = ""


class StartNotesInput(BaseModel):
    """Credit notes an account issued, whose workflows are to be started."""

    notes: list[NoteInput]


class StartNotesResult(BaseModel):
    already_cashed: list[str] = Field(default_factory=list)
    """Uids of the notes refused because their cheque's note exists for another cashing."""


class SignNoteEndInput(BaseModel):
    """What a credit note's workflow asks the ledger workers to sign: its end, and the signed
    start input that shows its account issued it."""

    note: NoteInput
    closed: HoldClosed


class NoteKeeper(StrEnum):
    """Who keeps a credit note, as its account answers (query ``note_keeper``)."""

    ACCOUNT = "account"
    STARTING = "starting"
    WORKFLOW = "workflow"


class NoteView(BaseModel):
    """A credit note's state, as its workflow answers it."""

    note: CreditNote
    cash_key: str
    status: HoldStatus
    paid: NonNegativeMoney
    closed_at: AwareDatetime | None = None


class BalanceView(BaseModel):
    """An account's money: ``available = balance - held``; ``in_flight`` is paid, not yet delivered."""

    account: str
    owner: str
    balance: Money
    held: NonNegativeMoney
    available: Money
    in_flight: NonNegativeMoney
    overdraft_limit: NonNegativeMoney
    open_holds: int


class EntryKind(StrEnum):
    DEPOSIT = "deposit"
    HOLD = "hold"
    RECEIPT = "receipt"
    RELEASE = "release"
    REFUND = "refund"
    AUTO_REFUND = "auto_refund"
    CREDIT = "credit"
    TRANSFER_DELIVERED = "transfer_delivered"
    TRANSFER_RETURNED = "transfer_returned"


class LedgerEntry(BaseModel):
    """One immutable line of the books. Re-adding the deltas of every entry gives the balances."""

    account: str
    seq: int
    entry_id: str
    at: AwareDatetime
    kind: EntryKind
    amount: NonNegativeMoney
    balance_delta: Money
    held_delta: Money
    in_flight_delta: Money
    reference: str
    idempotency_key: str
    job_uid: str = ""
    """The job a hold, receipt, release, refund or credit was for ("" for deposits)."""

    @property
    def object_key(self) -> str:
        """Where the audit trail keeps this entry in the object store."""
        return f"ledger/{self.account}/{self.seq:012d}-{self.entry_id}.json"


class Statement(BaseModel):
    view: BalanceView
    entries: list[LedgerEntry]


class Transfer(BaseModel):
    """Money a receipt took from the payer, on its way to the recipient's account."""

    transfer_id: str
    from_account: str
    to_account: str
    amount: PositiveMoney
    credit_note_uid: str
    created_at: AwareDatetime
    job_uid: str = ""


# --- Update inputs and results --------------------------------------------------------------


class DepositInput(BaseModel):
    """Add ``amount`` to ``account``: an order the operator signs (see ``jobsheet.ledger.orders``).

    ``signature`` covers every other field. The signer's fields default to empty only so that
    histories recorded before deposits were signed still decode; an account refuses them now.
    """

    idempotency_key: str
    amount: PositiveMoney
    reference: str = ""
    account: str = ""
    signed_by: str = ""
    key_id: str = ""
    signed_at: AwareDatetime | None = None
    signature: str = ""

    _utc = field_validator("signed_at")(as_utc_or_none)


class OverdraftInput(BaseModel):
    """Let ``account`` go ``limit`` below zero: an order the operator signs, like a deposit.

    ``signature`` covers every other field (see ``jobsheet.ledger.orders.sign_overdraft``).
    """

    idempotency_key: str
    account: str
    limit: NonNegativeMoney
    signed_by: str = ""
    key_id: str = ""
    signed_at: AwareDatetime | None = None
    signature: str = ""

    _utc = field_validator("signed_at")(as_utc_or_none)


class CashChequeInput(BaseModel):
    """Cash ``cheque`` for ``spend`` on behalf of ``recipient``: places a hold, returns a note."""

    idempotency_key: str
    cheque: Cheque
    spend: PositiveMoney
    recipient: str
    resource: str
    receipt_within_seconds: int = Field(
        default=DEFAULT_RECEIPT_WITHIN_SECONDS, gt=0, le=MAX_RECEIPT_WITHIN_SECONDS
    )
    job_uid: str = ""
    """The job sheet the hold pays for: its credit note and statement lines name it."""


class ReceiptInput(BaseModel):
    """Take ``amount`` (0 <= amount <= held) of a credit note; the rest goes back to the payer."""

    idempotency_key: str
    credit_note: CreditNote
    amount: NonNegativeMoney


class ReceiptResult(BaseModel):
    credit_note_uid: str
    paid: NonNegativeMoney
    released: NonNegativeMoney
    transfer_id: str | None


class RefundInput(BaseModel):
    idempotency_key: str
    credit_note: CreditNote


class RefundResult(BaseModel):
    credit_note_uid: str
    released: NonNegativeMoney


class CreditInput(BaseModel):
    """A transfer arriving from another account (idempotency key = the transfer id).

    ``signature`` is the ledger workers' (see ``jobsheet.ledger.orders.sign_credit``); it also
    covers the account credited, so a signed credit cannot be replayed to another account.
    """

    idempotency_key: str
    from_account: str
    amount: PositiveMoney
    reference: str
    job_uid: str = ""
    signature: str = ""


class TransferOutcome(BaseModel):
    delivered: bool
    reason: str = ""


class AuditInput(BaseModel):
    entries: list[LedgerEntry]
