"""The ledger's boundary models: inputs and results of account updates, activities and queries.

One input model per operation, each with its own ``idempotency_key``: the same key applied twice
gives the first answer again and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field

from jobsheet.authorisation import Authorisation
from jobsheet.cheque import Cheque
from jobsheet.identity import PublicKeyRecord
from jobsheet.money import Money, NonNegativeMoney, PositiveMoney

DEFAULT_RECEIPT_WITHIN_SECONDS = 2 * 3600
MAX_RECEIPT_WITHIN_SECONDS = 7 * 24 * 3600


def account_workflow_id(account: str) -> str:
    """The id of the workflow that keeps account ``account``'s ledger."""
    return f"account-{account}"


def user_workflow_id(name: str) -> str:
    """The id of the workflow that keeps user ``name``'s public keys and used nonces."""
    return f"user-{name}"


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


class HoldStatus(StrEnum):
    OPEN = "open"
    RECEIPTED = "receipted"
    REFUNDED = "refunded"


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


# --- Update inputs and results --------------------------------------------------------------


class DepositInput(BaseModel):
    idempotency_key: str
    amount: PositiveMoney
    reference: str = ""


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
    """A transfer arriving from another account (idempotency key = the transfer id)."""

    idempotency_key: str
    from_account: str
    amount: PositiveMoney
    reference: str


class TransferOutcome(BaseModel):
    delivered: bool
    reason: str = ""


class AuditInput(BaseModel):
    entries: list[LedgerEntry]


class KeysLookupInput(BaseModel):
    user: str


class VerifyAuthorisationInput(BaseModel):
    """Verify ``authorisation`` for exactly ``resource`` and consume it (once per key)."""

    idempotency_key: str
    authorisation: Authorisation
    resource: str
    max_age_seconds: int | None = Field(default=None, gt=0, le=86400)


class AuthorisationVerdict(BaseModel):
    user: str
    resource: str
    key_id: str
    verified_at: datetime


class RegisterKeyInput(BaseModel):
    """Add ``key``; with ``retire_others`` every older key stops signing at ``key.valid_from``."""

    idempotency_key: str
    key: PublicKeyRecord
    retire_others: bool = True


class RevokeKeyInput(BaseModel):
    idempotency_key: str
    key_id: str


class UseNonceInput(BaseModel):
    idempotency_key: str
    nonce: str
    issued_at: AwareDatetime
