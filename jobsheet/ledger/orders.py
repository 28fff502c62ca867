"""Signed ledger orders: deposits signed by the operator, credits signed by the ledger workers.

Anyone who reaches the Temporal frontend can send an account workflow an update, so the two
updates that add money to an account need a signature made with a key the frontend does not
hold: a ``deposit`` is an order signed by the operator (the user ``settings.operator_user``, with
a key registered in the user registry), a ``credit`` is signed by the ledger workers' own key
(``settings.ledger_private_key()``). Signing and checking are pure: callers pass keys and ``now``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jobsheet.canonical import canonical_json
from jobsheet.identity import Identity, IdentityError, PublicKeyRecord, load_identity
from jobsheet.ledger.errors import (
    BAD_SIGNATURE,
    NOT_OPERATOR,
    STALE_SIGNATURE,
    UNSIGNED,
    WRONG_ACCOUNT,
    Refused,
)
from jobsheet.ledger.models import CreditInput, DepositInput, OperatorKeys
from jobsheet.money import to_money
from jobsheet.names import check_name

DEPOSIT_MAX_AGE = timedelta(minutes=10)
"""How old a deposit order may be when it reaches the account (retries included)."""
DEPOSIT_MAX_SKEW = timedelta(minutes=1)
"""How far in the future a deposit order may be dated (the signer's clock may run ahead)."""
LEDGER_SIGNER = "ledger"
LEDGER_KEY_VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)
CREDIT_FIELDS = frozenset({"idempotency_key", "from_account", "amount", "reference", "job_uid"})


# --- deposits: signed by the operator -------------------------------------------------------


def deposit_bytes(order: DepositInput) -> bytes:
    """The canonical bytes the operator signs: every field of the order but the signature."""
    return canonical_json(order.model_dump(mode="json", exclude={"signature"}))


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
    max_age: timedelta = DEPOSIT_MAX_AGE,
    skew: timedelta = DEPOSIT_MAX_SKEW,
) -> None:
    """Raise :class:`Refused` unless ``order`` is a recent deposit on ``account`` signed by the
    operator with a key that may sign at ``signed_at``.

    ``operator`` is who the *verifier* trusts (from its own settings), never the order's
    ``signed_by``; ``operator=None`` checks only what needs no keys (for an update validator).
    """
    key = order.idempotency_key
    if not order.signature or not order.key_id or order.signed_at is None:
        raise Refused(UNSIGNED, f"deposit {key} is not signed; deposits need the operator's key")
    if order.account != account:
        raise Refused(
            WRONG_ACCOUNT, f"deposit {key} is signed for {order.account!r}, not {account}"
        )
    age = now - order.signed_at
    if age > max_age:
        raise Refused(
            STALE_SIGNATURE,
            f"deposit {key} was signed {age.total_seconds():.0f}s ago; the limit is "
            f"{max_age.total_seconds():.0f}s: sign it again",
        )
    if age < -skew:
        raise Refused(STALE_SIGNATURE, f"deposit {key} is dated in the future")
    if operator is None:
        return
    if order.signed_by != operator.user:
        raise Refused(
            NOT_OPERATOR,
            f"deposit {key} is signed by {order.signed_by!r}; only the operator "
            f"{operator.user!r} may deposit",
        )
    for record in operator.keys:
        if record.key_id == order.key_id:
            if not record.may_sign_at(order.signed_at):
                raise Refused(
                    BAD_SIGNATURE,
                    f"deposit {key} is signed with key {order.key_id} outside its signing "
                    "period (rotated or revoked)",
                )
            if not record.verifies(deposit_bytes(order), order.signature):
                raise Refused(BAD_SIGNATURE, f"deposit {key} has a bad signature")
            return
    raise Refused(
        BAD_SIGNATURE, f"deposit {key} is signed with a key the operator {operator.user} never had"
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
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key, validate=True))
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
    """Raise :class:`Refused` unless the ledger workers' ``key`` signed this credit to
    ``account``; ``key=None`` checks only that it is signed at all (for an update validator)."""
    if not request.signature:
        raise Refused(UNSIGNED, f"credit {request.idempotency_key} is not signed by the ledger")
    if key is not None and not credit_verifies(request, account=account, key=key):
        raise Refused(
            BAD_SIGNATURE, f"credit {request.idempotency_key} is not the ledger's signature"
        )
