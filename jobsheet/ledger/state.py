"""The account ledger as a pure, deterministic state machine; the account workflow wraps it.

Every operation takes ``now`` from its caller (``workflow.now()`` in the workflow), checks
everything before it changes anything, and is remembered under its idempotency key, so applying
the same key again returns the first answer (or refusal) and changes nothing. Money lives in
three places per account: ``balance`` (of which ``held`` is reserved by open credit notes) and
``in_flight`` (paid by a receipt, not yet delivered to the recipient's account). Every change
is also a :class:`LedgerEntry` whose deltas re-add to those figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, Field

from jobsheet.contracts.refusals import Refusal
from jobsheet.core.money import MAX_AMOUNT, Money, NonNegativeMoney
from jobsheet.identity.keys import PublicKeyRecord
from jobsheet.ledger.cheque import Cheque
from jobsheet.ledger.errors import (
    CHEQUE_ALREADY_CASHED,
    CHEQUE_EXPIRED,
    CREDIT_NOTE_CLOSED,
    INSUFFICIENT_FUNDS,
    INVALID_AMOUNT,
    NOT_ACCOUNT_OWNER,
    OVER_HELD,
    OVER_MAX_SPEND,
    UNKNOWN_CREDIT_NOTE,
    WRONG_ACCOUNT,
    WRONG_RECIPIENT,
    WRONG_RESOURCE,
)
from jobsheet.ledger.models import (
    BalanceView,
    CloseKind,
    CreditNote,
    EntryKind,
    HoldClosed,
    HoldStatus,
    LedgerEntry,
    NoteInput,
    ReceiptResult,
    RefundResult,
    Transfer,
    note_uid_for,
    transfer_id_for,
)

ZERO = Decimal("0.00")
RECENT_ENTRIES = 50
KEY_RETENTION = timedelta(days=1)
MAX_REMEMBERED = 50
"""Answers carried to the next run: a cashing repeated later is refused by its note's id, a
deposit or overdraft order by ``deposited``/``limit_orders``, so this is only a short memory."""
CREDIT_RETENTION = timedelta(days=7)
CLOSED_HOLD_RETENTION = timedelta(days=1)
MAX_CLOSED_HOLDS = 500
CHEQUE_GRACE = timedelta(minutes=5)
DEPOSIT_ORDER_RETENTION = timedelta(hours=1)
"""How long an account keeps a signed deposit's key, by its ``signed_at``: longer than an order
stays fresh, so an order read from history cannot be applied twice once its answer is pruned."""

R = TypeVar("R", bound=BaseModel)


def cheque_tag(cheque_uid: str) -> str:
    """A short digest of a cheque's uid, as the account remembers recent cheques by."""
    return hashlib.sha256(cheque_uid.encode()).hexdigest()[:16]


class Hold(BaseModel):
    note: CreditNote
    status: HoldStatus = HoldStatus.OPEN
    paid: NonNegativeMoney = ZERO
    closed_at: AwareDatetime | None = None


class Remembered(BaseModel):
    """The first answer given to an idempotency key."""

    at: AwareDatetime
    payload: dict[str, Any] | None = None
    refusal_type: str | None = None
    refusal_message: str | None = None


class AccountState(BaseModel):
    """Everything an account workflow carries across continue-as-new."""

    account: str
    owner: str
    overdraft_limit: NonNegativeMoney = ZERO
    balance: Money = ZERO
    held: NonNegativeMoney = ZERO
    in_flight: NonNegativeMoney = ZERO
    seq: int = 0
    notes_open: int = Field(default=0, ge=0)
    """Holds whose credit note is a workflow of its own (each with its refund timer)."""
    settled: list[str] = Field(default_factory=list)
    """Credit notes whose end this run applied, and (``settled_before``) the previous run's: a
    note's end arrives once as a signal; these catch a delivery the server repeats."""
    settled_before: list[str] = Field(default_factory=list)
    cheques: list[str] = Field(default_factory=list)
    """Cheques this run cashed into notes (by :func:`cheque_tag`), and (``cheques_before``) the
    previous run's: a repeat is refused at once. (Older ones are refused by their note's id,
    which names the cheque.)"""
    cheques_before: list[str] = Field(default_factory=list)
    notes_to_start: list[NoteInput] = Field(default_factory=list)
    """Notes issued whose workflows are not started yet (the account starts them in batches)."""
    owner_keys: list[PublicKeyRecord] | None = None
    """The owner's registered keys as last looked up (at ``owner_keys_at``), to check cheques."""
    owner_keys_at: AwareDatetime | None = None
    holds: dict[str, Hold] = Field(default_factory=dict)
    """Holds placed before credit notes became workflows, until they close."""
    cashed: dict[str, AwareDatetime] = Field(default_factory=dict)
    credited: dict[str, AwareDatetime] = Field(default_factory=dict)
    deposited: dict[str, AwareDatetime] = Field(default_factory=dict)
    limit_orders: dict[str, AwareDatetime] = Field(default_factory=dict)
    """Keys of applied overdraft orders by ``signed_at``, kept like ``deposited``."""
    transfers: list[Transfer] = Field(default_factory=list)
    remembered: dict[str, Remembered] = Field(default_factory=dict)
    recent: list[LedgerEntry] = Field(default_factory=list)
    unaudited: list[LedgerEntry] = Field(default_factory=list)

    # --- reads ---------------------------------------------------------------------------

    @property
    def available(self) -> Decimal:
        return self.balance - self.held

    def view(self) -> BalanceView:
        return BalanceView(
            account=self.account,
            owner=self.owner,
            balance=self.balance,
            held=self.held,
            available=self.available,
            in_flight=self.in_flight,
            overdraft_limit=self.overdraft_limit,
            open_holds=len(self.open_holds()) + self.notes_open,
        )

    def open_holds(self) -> list[Hold]:
        return [hold for hold in self.holds.values() if hold.status is HoldStatus.OPEN]

    def next_receipt_by(self) -> datetime | None:
        """When the earliest open hold falls due for its automatic refund."""
        return min((hold.note.receipt_by for hold in self.open_holds()), default=None)

    def has_seen(self, idempotency_key: str) -> bool:
        return idempotency_key in self.remembered

    def has_credited(self, transfer_id: str) -> bool:
        return transfer_id in self.credited

    # --- operations ------------------------------------------------------------------------

    def deposit(
        self,
        key: str,
        amount: Decimal,
        now: datetime,
        reference: str = "",
        *,
        verify: Callable[[], None] | None = None,
        signed_at: datetime | None = None,
    ) -> BalanceView:
        """Add ``amount`` to the balance, once per key.

        ``verify`` (the operator's signature check) runs only for a key not seen before, and its
        refusal is not remembered: a forged order must not use up a key a real one may carry.
        A signed order's key is also kept by ``signed_at`` until the order is long stale.
        """
        if key in self.deposited and not self.has_seen(key):
            return self.view()
        if verify is not None and not self.has_seen(key):
            verify()

        def apply() -> BalanceView:
            self._check_room(amount)
            self.balance += amount
            if signed_at is not None:
                self.deposited[key] = signed_at
            self._entry(now, EntryKind.DEPOSIT, amount, key, reference or key, balance=amount)
            return self.view()

        return self._once(key, now, apply, BalanceView)

    def set_overdraft_limit(
        self,
        key: str,
        limit: Decimal,
        now: datetime,
        *,
        verify: Callable[[], None] | None = None,
        signed_at: datetime | None = None,
    ) -> BalanceView:
        """Let the account go ``limit`` below zero from now on, once per key (holds already
        placed stay). ``verify`` (the operator's signature check) runs as for a deposit."""
        if key in self.limit_orders and not self.has_seen(key):
            return self.view()
        if verify is not None and not self.has_seen(key):
            verify()

        def apply() -> BalanceView:
            if limit < 0 or limit > MAX_AMOUNT:
                raise Refusal(INVALID_AMOUNT, f"an overdraft limit must be 0 to {MAX_AMOUNT}")
            self.overdraft_limit = limit
            if signed_at is not None:
                self.limit_orders[key] = signed_at
            return self.view()

        return self._once(key, now, apply, BalanceView)

    def check_cheque(
        self,
        cheque: Cheque,
        *,
        spend: Decimal,
        recipient: str,
        resource: str,
        now: datetime,
        keys: Sequence[PublicKeyRecord] | None,
    ) -> None:
        """Raise :class:`Refusal` unless the cheque may be cashed now; ``keys=None`` skips the
        signature (for a workflow update validator, which cannot look keys up)."""
        if cheque.account != self.account:
            raise Refusal(WRONG_ACCOUNT, f"cheque {cheque.uid} draws on {cheque.account}")
        if cheque.drawer != self.owner:
            raise Refusal(NOT_ACCOUNT_OWNER, f"{cheque.drawer} does not own {self.account}")
        if keys is not None:
            cheque.verify_signature(keys)
        if recipient != cheque.recipient:
            raise Refusal(WRONG_RECIPIENT, f"cheque {cheque.uid} is not payable to {recipient}")
        if resource != cheque.resource:
            raise Refusal(WRONG_RESOURCE, f"cheque {cheque.uid} pays for another resource")
        if now >= cheque.expires_at:
            raise Refusal(CHEQUE_EXPIRED, f"cheque {cheque.uid} expired at {cheque.expires_at}")
        if (
            cheque.uid in self.cashed
            or cheque_tag(cheque.uid) in self.cheques
            or cheque_tag(cheque.uid) in self.cheques_before
        ):
            raise Refusal(CHEQUE_ALREADY_CASHED, f"cheque {cheque.uid} was already cashed")
        if spend > cheque.max_spend:
            raise Refusal(OVER_MAX_SPEND, f"{spend} is over the cheque's {cheque.max_spend}")
        if self.available - spend < -self.overdraft_limit:
            raise Refusal(
                INSUFFICIENT_FUNDS,
                f"{self.account} has {self.available} available (overdraft limit "
                f"{self.overdraft_limit}); cannot hold {spend}",
            )

    def cash_cheque(
        self,
        key: str,
        cheque: Cheque,
        *,
        spend: Decimal,
        recipient: str,
        resource: str,
        receipt_within: timedelta,
        keys: Sequence[PublicKeyRecord],
        now: datetime,
        job_uid: str = "",
        note_workflow: bool = False,
    ) -> CreditNote:
        """Hold ``spend`` for ``recipient`` and issue the credit note, once per key. With
        ``note_workflow`` the note is kept by a workflow of its own (whose id also guards the
        cheque against a second cashing), so the account keeps only its totals."""

        def apply() -> CreditNote:
            self.check_cheque(
                cheque, spend=spend, recipient=recipient, resource=resource, now=now, keys=keys
            )
            note = CreditNote(
                uid=note_uid_for(cheque.uid),
                account=self.account,
                recipient=cheque.recipient,
                resource=cheque.resource,
                cheque_uid=cheque.uid,
                held=spend,
                issued_at=now,
                receipt_by=now + receipt_within,
                job_uid=job_uid,
            )
            if note_workflow:
                self.notes_open += 1
                self.cheques.append(cheque_tag(cheque.uid))
                self.notes_to_start.append(
                    NoteInput(note=note, cash_key=key, cheque_expires_at=cheque.expires_at)
                )
            else:
                self.cashed[cheque.uid] = cheque.expires_at
                self.holds[note.uid] = Hold(note=note)
            self.held += spend
            self._entry(now, EntryKind.HOLD, spend, key, note.uid, held=spend, job_uid=job_uid)
            return note

        return self._once(key, now, apply, CreditNote)

    def check_open_hold(self, note: CreditNote) -> Hold:
        """The open hold ``note`` stands for, or :class:`Refusal`."""
        if note.account != self.account:
            raise Refusal(WRONG_ACCOUNT, f"credit note {note.uid} is on {note.account}")
        hold = self.holds.get(note.uid)
        if hold is None or hold.note != note:
            raise Refusal(UNKNOWN_CREDIT_NOTE, f"{self.account} issued no credit note {note.uid}")
        if hold.status is not HoldStatus.OPEN:
            raise Refusal(CREDIT_NOTE_CLOSED, f"credit note {note.uid} is already {hold.status}")
        return hold

    def note_started(self, note_uid: str) -> None:
        """The workflow of a note issued here is running."""
        self.notes_to_start = [n for n in self.notes_to_start if n.note.uid != note_uid]

    def void_note(self, key: str, note: CreditNote, now: datetime) -> None:
        """Take back the hold of a cashing whose note could not be kept because the cheque's
        note already exists (the cheque was cashed before): the cashing becomes that refusal."""
        self.note_started(note.uid)
        self.notes_open -= 1
        self._release_whole(note, EntryKind.REFUND, f"void-{key}", now)
        self.remembered[key] = Remembered(
            at=now,
            refusal_type=CHEQUE_ALREADY_CASHED,
            refusal_message=f"cheque {note.cheque_uid} was already cashed",
        )

    def has_settled(self, note_uid: str) -> bool:
        return note_uid in self.settled or note_uid in self.settled_before

    def check_hold_closed(self, closed: HoldClosed) -> None:
        """Raise :class:`Refusal` unless ``closed`` can end one of this account's notes."""
        note = closed.note
        if note.account != self.account:
            raise Refusal(WRONG_ACCOUNT, f"credit note {note.uid} is on {note.account}")
        if closed.paid > note.held:
            raise Refusal(OVER_HELD, f"cannot receipt {closed.paid} of {note.held} held")
        if self.notes_open < 1 or self.held < note.held:
            raise Refusal(UNKNOWN_CREDIT_NOTE, f"{self.account} holds no note {note.uid}")

    def close_note(self, closed: HoldClosed, now: datetime) -> bool:
        """Apply the end of a note kept by its own workflow, once: pay ``closed.paid`` to the
        recipient and release the rest. False when this end was applied already."""
        note = closed.note
        if self.has_settled(note.uid):
            return False
        self.check_hold_closed(closed)
        self.notes_open -= 1
        self.settled.append(note.uid)
        if closed.kind is CloseKind.RECEIPT:
            self._settle(note, closed.paid, closed.idempotency_key, now)
        else:
            kind = (
                EntryKind.AUTO_REFUND if closed.kind is CloseKind.AUTO_REFUND else EntryKind.REFUND
            )
            self._release_whole(note, kind, closed.idempotency_key, now)
        return True

    def receipt(self, key: str, note: CreditNote, amount: Decimal, now: datetime) -> ReceiptResult:
        def apply() -> ReceiptResult:
            hold = self.check_open_hold(note)
            if amount < 0 or amount > hold.note.held:
                raise Refusal(OVER_HELD, f"cannot receipt {amount} of {hold.note.held} held")
            self._close(hold, HoldStatus.RECEIPTED, now, paid=amount)
            return self._settle(hold.note, amount, key, now)

        return self._once(key, now, apply, ReceiptResult)

    def _settle(self, note: CreditNote, amount: Decimal, key: str, now: datetime) -> ReceiptResult:
        """Pay ``amount`` of ``note`` to its recipient (a transfer) and release the rest."""
        released = note.held - amount
        transfer_id = None
        if amount > 0:
            transfer = Transfer(
                transfer_id=transfer_id_for(note.uid),
                from_account=self.account,
                to_account=note.recipient,
                amount=amount,
                credit_note_uid=note.uid,
                created_at=now,
                job_uid=note.job_uid,
            )
            transfer_id = transfer.transfer_id
            self.transfers.append(transfer)
            self.balance -= amount
            self.held -= amount
            self.in_flight += amount
            self._entry(
                now,
                EntryKind.RECEIPT,
                amount,
                key,
                note.uid,
                balance=-amount,
                held=-amount,
                in_flight=amount,
                job_uid=note.job_uid,
            )
        if released > 0:
            self.held -= released
            self._entry(
                now,
                EntryKind.RELEASE,
                released,
                key,
                note.uid,
                held=-released,
                job_uid=note.job_uid,
            )
        return ReceiptResult(
            credit_note_uid=note.uid, paid=amount, released=released, transfer_id=transfer_id
        )

    def refund(self, key: str, note: CreditNote, now: datetime) -> RefundResult:
        def apply() -> RefundResult:
            hold = self.check_open_hold(note)
            return self._refund(hold, EntryKind.REFUND, key, now)

        return self._once(key, now, apply, RefundResult)

    def expire_holds(self, now: datetime) -> list[RefundResult]:
        """Refund every open hold whose ``receipt_by`` has come: the automatic refund."""
        return [
            self._refund(hold, EntryKind.AUTO_REFUND, f"auto-refund-{hold.note.uid}", now)
            for hold in self.open_holds()
            if hold.note.receipt_by <= now
        ]

    def credit(
        self,
        key: str,
        from_account: str,
        amount: Decimal,
        reference: str,
        now: datetime,
        *,
        job_uid: str = "",
        verify: Callable[[], None] | None = None,
    ) -> BalanceView:
        """Money arriving from another account's receipt; once per transfer id, for a week.

        ``verify`` (the ledger's signature check) runs only for a transfer not credited yet.
        """
        if self.has_credited(key):
            return self.view()
        if verify is not None:
            verify()
        self._check_room(amount)
        self.credited[key] = now
        self.balance += amount
        self._entry(
            now,
            EntryKind.CREDIT,
            amount,
            key,
            f"{from_account}:{reference}",
            balance=amount,
            job_uid=job_uid,
        )
        return self.view()

    def transfer_delivered(self, transfer_id: str, now: datetime) -> None:
        transfer = self._take_transfer(transfer_id)
        if transfer is not None:
            self.in_flight -= transfer.amount
            self._entry(
                now,
                EntryKind.TRANSFER_DELIVERED,
                transfer.amount,
                f"delivered-{transfer_id}",
                transfer.to_account,
                in_flight=-transfer.amount,
                job_uid=transfer.job_uid,
            )

    def transfer_returned(self, transfer_id: str, now: datetime) -> None:
        """The recipient account does not exist: the money comes back to the payer's balance."""
        transfer = self._take_transfer(transfer_id)
        if transfer is not None:
            self.in_flight -= transfer.amount
            self.balance += transfer.amount
            self._entry(
                now,
                EntryKind.TRANSFER_RETURNED,
                transfer.amount,
                f"returned-{transfer_id}",
                transfer.to_account,
                balance=transfer.amount,
                in_flight=-transfer.amount,
                job_uid=transfer.job_uid,
            )

    def take_unaudited(self) -> list[LedgerEntry]:
        return list(self.unaudited)

    def mark_audited(self, entries: Sequence[LedgerEntry]) -> None:
        written = {entry.seq for entry in entries}
        self.unaudited = [entry for entry in self.unaudited if entry.seq not in written]

    def prune(self, now: datetime) -> None:
        """Forget what can no longer matter, so that the carried state stays small (once per
        run, as it continues as new: this run's settled notes become the previous run's)."""
        self.settled_before, self.settled = self.settled, []
        self.cheques_before, self.cheques = self.cheques, []
        self.cashed = {uid: exp for uid, exp in self.cashed.items() if exp + CHEQUE_GRACE > now}
        self.credited = {k: at for k, at in self.credited.items() if at + CREDIT_RETENTION > now}
        self.deposited = {
            k: at for k, at in self.deposited.items() if at + DEPOSIT_ORDER_RETENTION > now
        }
        self.limit_orders = {
            k: at for k, at in self.limit_orders.items() if at + DEPOSIT_ORDER_RETENTION > now
        }
        recent = sorted(self.remembered.items(), key=lambda item: item[1].at)[-MAX_REMEMBERED:]
        self.remembered = {k: v for k, v in recent if v.at + KEY_RETENTION > now}
        closed = sorted(
            (h for h in self.holds.values() if h.closed_at is not None),
            key=lambda h: h.closed_at or now,
        )
        drop = {
            h.note.uid
            for index, h in enumerate(closed)
            if index < len(closed) - MAX_CLOSED_HOLDS
            or (h.closed_at is not None and h.closed_at + CLOSED_HOLD_RETENTION <= now)
        }
        self.holds = {uid: h for uid, h in self.holds.items() if uid not in drop}

    # --- internals -----------------------------------------------------------------------

    def _once(self, key: str, now: datetime, apply: Callable[[], R], result_type: type[R]) -> R:
        seen = self.remembered.get(key)
        if seen is not None:
            if seen.refusal_type is not None:
                raise Refusal(seen.refusal_type, seen.refusal_message or seen.refusal_type)
            return result_type.model_validate(seen.payload)
        try:
            result = apply()
        except Refusal as exc:
            self.remembered[key] = Remembered(
                at=now, refusal_type=exc.type, refusal_message=exc.message
            )
            raise
        self.remembered[key] = Remembered(at=now, payload=result.model_dump(mode="json"))
        return result

    def _check_room(self, amount: Decimal) -> None:
        if amount <= 0:
            raise Refusal(INVALID_AMOUNT, f"amount must be positive: {amount}")
        if self.balance + amount > MAX_AMOUNT:
            raise Refusal(INVALID_AMOUNT, f"{self.account} would hold more than {MAX_AMOUNT}")

    def _refund(self, hold: Hold, kind: EntryKind, key: str, now: datetime) -> RefundResult:
        self._close(hold, HoldStatus.REFUNDED, now)
        self._release_whole(hold.note, kind, key, now)
        return RefundResult(credit_note_uid=hold.note.uid, released=hold.note.held)

    def _release_whole(self, note: CreditNote, kind: EntryKind, key: str, now: datetime) -> None:
        """Give ``note``'s whole held value back to the balance, with its line."""
        self.held -= note.held
        self._entry(now, kind, note.held, key, note.uid, held=-note.held, job_uid=note.job_uid)

    def _close(self, hold: Hold, status: HoldStatus, now: datetime, paid: Decimal = ZERO) -> None:
        if hold.status is not HoldStatus.OPEN:  # pragma: no cover - callers check first
            raise AssertionError(f"hold {hold.note.uid} is already {hold.status}")
        hold.status = status
        hold.paid = paid
        hold.closed_at = now

    def _take_transfer(self, transfer_id: str) -> Transfer | None:
        for index, transfer in enumerate(self.transfers):
            if transfer.transfer_id == transfer_id:
                return self.transfers.pop(index)
        return None

    def _entry(
        self,
        now: datetime,
        kind: EntryKind,
        amount: Decimal,
        key: str,
        reference: str,
        *,
        balance: Decimal = ZERO,
        held: Decimal = ZERO,
        in_flight: Decimal = ZERO,
        job_uid: str = "",
    ) -> None:
        self.seq += 1
        digest = hashlib.sha256(f"{self.account}/{self.seq}/{kind}/{key}".encode()).hexdigest()
        entry = LedgerEntry(
            account=self.account,
            seq=self.seq,
            entry_id=f"{kind.value}-{digest[:16]}",
            at=now,
            kind=kind,
            amount=amount,
            balance_delta=balance,
            held_delta=held,
            in_flight_delta=in_flight,
            reference=reference,
            idempotency_key=key,
            job_uid=job_uid,
        )
        self.recent = [*self.recent[-(RECENT_ENTRIES - 1) :], entry]
        self.unaudited.append(entry)
