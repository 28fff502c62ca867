"""Signed ledger orders: deposits and overdraft limits signed by the operator, credits signed by
the ledger workers.

Anyone who reaches the Temporal frontend can send an account workflow an update, so the updates
that add money to an account, or let it spend money it does not have, need a signature made with
a key the frontend does not hold: a ``deposit`` and a ``set_overdraft_limit`` are orders signed
by the operator (the user ``settings.operator_user``, with a key registered in the user
registry), a ``credit`` is signed by the ledger workers' own key
(``settings.ledger_private_key()``). Signing and checking are pure: callers pass keys and ``now``.
What every signed order checks (its bytes, its age, its key) is
:mod:`jobsheet.identity.signed_orders`, shared with the key orders of
:mod:`jobsheet.identity.key_orders`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jobsheet.contracts.refusals import Refusal
from jobsheet.core.canonical import canonical_json
from jobsheet.core.money import to_money
from jobsheet.core.names import check_name
from jobsheet.identity.keys import (
    Identity,
    IdentityError,
    PublicKeyRecord,
    load_identity,
    strict_b64decode,
)
from jobsheet.identity.models import OperatorKeys
from jobsheet.identity.signed_orders import (
    ORDER_MAX_AGE,
    ORDER_MAX_SKEW,
    check_fresh,
    check_signed_with,
    order_bytes,
)
from jobsheet.ledger.errors import BAD_SIGNATURE, NOT_OPERATOR, UNSIGNED, WRONG_ACCOUNT
from jobsheet.ledger.models import (
    CreditInput,
    DepositInput,
    HoldClosed,
    NoteInput,
    OverdraftInput,
)

LEDGER_SIGNER = "ledger"
LEDGER_KEY_VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)
CREDIT_FIELDS = frozenset({"idempotency_key", "from_account", "amount", "reference", "job_uid"})


# --- what every operator order checks ---------------------------------------------------------


class OperatorOrder(Protocol):
    """The fields of an order the operator signs for one account (a deposit, an overdraft)."""

    @property
    def idempotency_key(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def signed_by(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def signed_at(self) -> datetime | None: ...
    @property
    def signature(self) -> str: ...


def check_operator_order(
    what: str,
    order: OperatorOrder,
    message: bytes,
    *,
    account: str,
    now: datetime,
    operator: OperatorKeys | None,
    max_age: timedelta = ORDER_MAX_AGE,
    skew: timedelta = ORDER_MAX_SKEW,
    current: bool = False,
) -> None:
    """Raise :class:`Refusal` unless ``order`` (``what``, e.g. "deposit dep-1") is a recent order
    on ``account`` signed by the operator with a key that may sign at ``signed_at`` (and, with
    ``current``, still may at ``now``, so that a revoked key cannot sign an order dated before).

    ``operator`` is who the *verifier* trusts (from its own settings), never the order's
    ``signed_by``; ``operator=None`` checks only what needs no keys (for an update validator).
    """
    if not order.signature or not order.key_id or order.signed_at is None:
        raise Refusal(UNSIGNED, f"{what} is not signed; it needs the operator's key")
    if order.account != account:
        raise Refusal(WRONG_ACCOUNT, f"{what} is signed for {order.account!r}, not {account}")
    check_fresh(what, order.signed_at, now=now, max_age=max_age, skew=skew)
    if operator is None:
        return
    if order.signed_by != operator.user:
        raise Refusal(
            NOT_OPERATOR,
            f"{what} is signed by {order.signed_by!r}; only the operator {operator.user!r} "
            "may sign it",
        )
    check_signed_with(
        what,
        message,
        signature=order.signature,
        key_id=order.key_id,
        signed_at=order.signed_at,
        signer=f"the operator {operator.user}",
        keys=operator.keys,
        current_at=now if current else None,
    )


# --- deposits and overdraft limits: signed by the operator ------------------------------------


def deposit_bytes(order: DepositInput) -> bytes:
    """The canonical bytes the operator signs: every field of the order but the signature."""
    return order_bytes(order)


def sign_deposit(
    identity: Identity,
    *,
    account: str,
    amount: Decimal | int | str,
    idempotency_key: str,
    reference: str = "",
    now: datetime | None = None,
) -> DepositInput:
    """An order to add ``amount`` to ``account``, signed by ``identity`` (the operator)."""
    unsigned = DepositInput(
        idempotency_key=idempotency_key,
        amount=to_money(amount),
        reference=reference,
        account=check_name(account, what="account name"),
        signed_by=identity.name,
        key_id=identity.key_id,
        signed_at=now or datetime.now(UTC),
    )
    return unsigned.model_copy(update={"signature": identity.sign(deposit_bytes(unsigned))})


def check_deposit(
    order: DepositInput,
    *,
    account: str,
    now: datetime,
    operator: OperatorKeys | None,
    max_age: timedelta = ORDER_MAX_AGE,
    skew: timedelta = ORDER_MAX_SKEW,
) -> None:
    """Raise :class:`Refusal` unless ``order`` is a recent deposit on ``account`` signed by the
    operator (see :func:`check_operator_order`)."""
    check_operator_order(
        f"deposit {order.idempotency_key}",
        order,
        deposit_bytes(order),
        account=account,
        now=now,
        operator=operator,
        max_age=max_age,
        skew=skew,
    )


def sign_overdraft(
    identity: Identity,
    *,
    account: str,
    limit: Decimal | int | str,
    idempotency_key: str,
    now: datetime | None = None,
) -> OverdraftInput:
    """An order letting ``account`` go ``limit`` below zero, signed by ``identity`` (the
    operator)."""
    unsigned = OverdraftInput(
        idempotency_key=idempotency_key,
        account=check_name(account, what="account name"),
        limit=to_money(limit),
        signed_by=identity.name,
        key_id=identity.key_id,
        signed_at=now or datetime.now(UTC),
    )
    return unsigned.model_copy(update={"signature": identity.sign(order_bytes(unsigned))})


def check_overdraft(
    order: OverdraftInput, *, account: str, now: datetime, operator: OperatorKeys | None
) -> None:
    """Raise :class:`Refusal` unless ``order`` is a recent overdraft limit for ``account`` signed
    by the operator (see :func:`check_operator_order`)."""
    check_operator_order(
        f"overdraft order {order.idempotency_key}",
        order,
        order_bytes(order),
        account=account,
        now=now,
        operator=operator,
        current=True,
    )


def load_operator(name: str, *, config_dir: Path | None, state_dir: Path) -> Identity:
    """The operator ``name``'s private key (``settings.operator_user``): from the config dir,
    else from the state dir, where the local stack's bootstrap keeps it."""
    try:
        return load_identity(name, config_dir=config_dir)
    except IdentityError:
        pass
    try:
        return load_identity(name, config_dir=state_dir)
    except IdentityError:
        raise IdentityError(
            f"no key for the operator {name!r} in the config or state directory: deposits "
            "are signed by the operator (JOBSHEET_OPERATOR_USER)"
        ) from None


# --- credits: signed by the ledger workers ----------------------------------------------------


def ledger_signer(private_key: str) -> Identity:
    """The ledger workers' signing key from ``settings.ledger_private_key()`` (base64, 32 bytes)."""
    try:
        key = Ed25519PrivateKey.from_private_bytes(strict_b64decode(private_key, size=32))
    except ValueError:
        raise ValueError(
            "the ledger key (JOBSHEET_LEDGER_KEY) must be base64 of 32 raw Ed25519 bytes"
        ) from None
    return Identity(LEDGER_SIGNER, key, LEDGER_KEY_VALID_FROM)


def credit_bytes(request: CreditInput, *, account: str) -> bytes:
    """The canonical bytes the ledger workers sign for a credit to ``account``."""
    fields = request.model_dump(mode="json", include=set(CREDIT_FIELDS))
    return canonical_json({**fields, "to_account": account})


def sign_credit(signer: Identity, request: CreditInput, *, account: str) -> CreditInput:
    """``request`` signed by the ledger workers for ``account`` only."""
    return request.model_copy(
        update={"signature": signer.sign(credit_bytes(request, account=account))}
    )


def credit_verifies(request: CreditInput, *, account: str, key: PublicKeyRecord) -> bool:
    return bool(request.signature) and key.verifies(
        credit_bytes(request, account=account), request.signature
    )


def check_credit(request: CreditInput, *, account: str, key: PublicKeyRecord | None) -> None:
    """Raise :class:`Refusal` unless the ledger workers' ``key`` signed this credit to
    ``account``; ``key=None`` checks only that it is signed at all (for an update validator)."""
    if not request.signature:
        raise Refusal(UNSIGNED, f"credit {request.idempotency_key} is not signed by the ledger")
    if key is not None and not credit_verifies(request, account=account, key=key):
        raise Refusal(
            BAD_SIGNATURE, f"credit {request.idempotency_key} is not the ledger's signature"
        )


def hold_closed_bytes(closed: HoldClosed) -> bytes:
    """The canonical bytes the ledger workers sign for a credit note's end."""
    return canonical_json(closed.model_dump(mode="json", exclude={"signature"}))


def sign_hold_closed(signer: Identity, closed: HoldClosed) -> HoldClosed:
    """``closed`` signed by the ledger workers, for the paying account to accept."""
    return closed.model_copy(update={"signature": signer.sign(hold_closed_bytes(closed))})


def hold_closed_verifies(closed: HoldClosed, *, key: PublicKeyRecord) -> bool:
    return bool(closed.signature) and key.verifies(hold_closed_bytes(closed), closed.signature)


def note_bytes(note: NoteInput) -> bytes:
    """The canonical bytes the ledger workers sign for a credit note its account issued."""
    return canonical_json(note.model_dump(mode="json", exclude={"signature"}))


def sign_note(signer: Identity, note: NoteInput) -> NoteInput:
    return note.model_copy(update={"signature": signer.sign(note_bytes(note))})


def note_verifies(note: NoteInput, *, key: PublicKeyRecord) -> bool:
    return bool(note.signature) and key.verifies(note_bytes(note), note.signature)
