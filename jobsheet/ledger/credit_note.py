"""One credit note as a pure state machine; its workflow (``workflows/credit_note.py``) wraps it.

A note is open until it is receipted, refunded or, at ``receipt_by``, refunded automatically;
whichever comes first decides, once. The same idempotency key again gets the first answer; any
other request after the end is refused (``CreditNoteClosed``). What the end means for money is
the paying account's to apply (:class:`~jobsheet.ledger.models.HoldClosed`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel

from jobsheet.contracts.refusals import Refusal
from jobsheet.core.money import NonNegativeMoney
from jobsheet.ledger.errors import CREDIT_NOTE_CLOSED, OVER_HELD, UNKNOWN_CREDIT_NOTE
from jobsheet.ledger.models import (
    CloseKind,
    CreditNote,
    HoldClosed,
    HoldStatus,
    NoteView,
    ReceiptResult,
    RefundResult,
    transfer_id_for,
)

ZERO = Decimal("0.00")


class NoteState(BaseModel):
    """Everything a credit note's workflow keeps."""

    note: CreditNote
    cash_key: str
    closed: HoldClosed | None = None
    closed_at: AwareDatetime | None = None
    paid: NonNegativeMoney = ZERO

    @property
    def status(self) -> HoldStatus:
        if self.closed is None:
            return HoldStatus.OPEN
        return (
            HoldStatus.RECEIPTED if self.closed.kind is CloseKind.RECEIPT else HoldStatus.REFUNDED
        )

    def view(self) -> NoteView:
        return NoteView(
            note=self.note,
            cash_key=self.cash_key,
            status=self.status,
            paid=self.paid,
            closed_at=self.closed_at,
        )

    def check(self, note: CreditNote, key: str) -> None:
        """Raise :class:`Refusal` unless a request about ``note`` under ``key`` may proceed: it
        names this very note, and the note is open or was closed by the same key."""
        if note != self.note:
            raise Refusal(UNKNOWN_CREDIT_NOTE, f"no credit note {note.uid} as given was issued")
        if self.closed is not None and self.closed.idempotency_key != key:
            raise Refusal(CREDIT_NOTE_CLOSED, f"credit note {note.uid} is already {self.status}")

    def receipt(self, key: str, note: CreditNote, amount: Decimal, now: datetime) -> ReceiptResult:
        """Take ``amount`` (0 to the held value) for the recipient; the rest returns."""
        self.check(note, key)
        if self.closed is None:
            if amount < 0 or amount > note.held:
                raise Refusal(OVER_HELD, f"cannot receipt {amount} of {note.held} held")
            self._close(CloseKind.RECEIPT, amount, key, now)
        elif self.closed.kind is not CloseKind.RECEIPT:
            raise Refusal(CREDIT_NOTE_CLOSED, f"credit note {note.uid} is already {self.status}")
        return self.receipt_result()

    def refund(self, key: str, note: CreditNote, now: datetime) -> RefundResult:
        """Return the whole held value to the payer."""
        self.check(note, key)
        if self.closed is None:
            self._close(CloseKind.REFUND, ZERO, key, now)
        elif self.closed.kind is CloseKind.RECEIPT:
            raise Refusal(CREDIT_NOTE_CLOSED, f"credit note {note.uid} is already {self.status}")
        return RefundResult(credit_note_uid=note.uid, released=note.held)

    def expire(self, now: datetime) -> bool:
        """Refund automatically if still open at ``receipt_by``; True if this closed it."""
        if self.closed is not None or now < self.note.receipt_by:
            return False
        self._close(CloseKind.AUTO_REFUND, ZERO, f"auto-refund-{self.note.uid}", now)
        return True

    def receipt_result(self) -> ReceiptResult:
        paid = self.paid
        return ReceiptResult(
            credit_note_uid=self.note.uid,
            paid=paid,
            released=self.note.held - paid,
            transfer_id=transfer_id_for(self.note.uid) if paid > 0 else None,
        )

    def _close(self, kind: CloseKind, paid: Decimal, key: str, now: datetime) -> None:
        self.closed = HoldClosed(note=self.note, kind=kind, paid=paid, idempotency_key=key)
        self.paid = paid
        self.closed_at = now
