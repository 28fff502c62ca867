"""Signed key orders: adding, rotating and revoking a user's keys.

A user's keys decide what may be signed in their name (cheques, authorisations, API requests,
and for the operator, deposits), so the user registry accepts a change only on an order signed
by a current key of that same user, or, to revoke a stolen key, by the operator. Each order names
the user, the key, an idempotency key and ``signed_at`` (fresh, like a deposit), and its signature
covers every other field. Signing and checking are pure: callers pass the keys and ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from jobsheet.contracts.refusals import Refusal
from jobsheet.identity.keys import (
    PUBLIC_KEY_BYTES,
    Identity,
    PublicKeyRecord,
    key_id_for,
    strict_b64decode,
)
from jobsheet.identity.models import OperatorKeys, RegisterKeyInput, RevokeKeyInput
from jobsheet.identity.signed_orders import check_fresh, check_signed_with, order_bytes
from jobsheet.ledger.errors import INVALID_KEY, NOT_OPERATOR, UNSIGNED, WRONG_USER


def sign_add_key(
    signer: Identity,
    key: PublicKeyRecord,
    *,
    idempotency_key: str,
    retire_others: bool,
    now: datetime | None = None,
) -> RegisterKeyInput:
    """An order to add ``key`` to ``signer``'s own keys (a rotation with ``retire_others``),
    signed with ``signer``'s current key."""
    unsigned = RegisterKeyInput(
        idempotency_key=idempotency_key,
        key=key,
        retire_others=retire_others,
        user=signer.name,
        signer_key_id=signer.key_id,
        signed_at=now or datetime.now(UTC),
    )
    return unsigned.model_copy(update={"signature": signer.sign(order_bytes(unsigned))})


def sign_revoke_key(
    signer: Identity,
    *,
    user: str,
    key_id: str,
    idempotency_key: str,
    now: datetime | None = None,
) -> RevokeKeyInput:
    """An order to revoke ``user``'s key ``key_id``, signed by ``signer``: that user, or the
    operator (for a stolen key)."""
    unsigned = RevokeKeyInput(
        idempotency_key=idempotency_key,
        key_id=key_id,
        user=user,
        signed_by=signer.name,
        signer_key_id=signer.key_id,
        signed_at=now or datetime.now(UTC),
    )
    return unsigned.model_copy(update={"signature": signer.sign(order_bytes(unsigned))})


def _signed_at(order: RegisterKeyInput | RevokeKeyInput, what: str, *, user: str) -> datetime:
    if not order.signature or not order.signer_key_id or order.signed_at is None:
        raise Refusal(UNSIGNED, f"{what} is not signed; key changes need a current key of {user}")
    if order.user != user:
        raise Refusal(WRONG_USER, f"{what} is signed for {order.user!r}, not {user}")
    return order.signed_at


def check_new_key(key: PublicKeyRecord) -> None:
    """Raise :class:`Refusal` (``InvalidKey``) unless ``key`` is an Ed25519 public key under its
    own key id, not yet retired or revoked."""
    try:
        raw = strict_b64decode(key.public_key, size=PUBLIC_KEY_BYTES)
    except ValueError:
        raise Refusal(
            INVALID_KEY, "the new key is not canonical base64 of a 32-byte Ed25519 public key"
        ) from None
    if key.key_id != key_id_for(raw):
        raise Refusal(INVALID_KEY, f"the new key's id should be {key_id_for(raw)}")
    if key.valid_until is not None or key.revoked_at is not None:
        raise Refusal(INVALID_KEY, "a new key cannot already be retired or revoked")


def check_add_key(
    order: RegisterKeyInput,
    *,
    user: str,
    keys: Sequence[PublicKeyRecord],
    now: datetime,
) -> None:
    """Raise :class:`Refusal` unless ``order`` adds a valid key to ``user`` and is recent and
    signed by a key of ``user``'s (``keys``) that may sign both at ``signed_at`` and ``now``."""
    what = f"key order {order.idempotency_key}"
    signed_at = _signed_at(order, what, user=user)
    check_fresh(what, signed_at, now=now)
    check_new_key(order.key)
    check_signed_with(
        what,
        order_bytes(order),
        signature=order.signature,
        key_id=order.signer_key_id,
        signed_at=signed_at,
        signer=user,
        keys=keys,
        current_at=now,
    )


def revoke_needs_operator(order: RevokeKeyInput, *, user: str) -> bool:
    """Whether the order claims a signer other than ``user`` (then only the operator will do)."""
    return order.signed_by != user


def check_revoke_key(
    order: RevokeKeyInput,
    *,
    user: str,
    keys: Sequence[PublicKeyRecord],
    now: datetime,
    operator: OperatorKeys | None,
) -> None:
    """Raise :class:`Refusal` unless ``order`` is a recent revocation of one of ``user``'s keys,
    signed by a current key of ``user`` (``keys``) or, when it names another signer, of the
    operator the verifier trusts. ``operator=None`` checks an operator's order only as far as
    it can without the operator's keys (for an update validator)."""
    what = f"revocation {order.idempotency_key}"
    signed_at = _signed_at(order, what, user=user)
    check_fresh(what, signed_at, now=now)
    if not revoke_needs_operator(order, user=user):
        signer, signer_keys = user, keys
    elif operator is None:
        return
    elif order.signed_by != operator.user:
        raise Refusal(
            NOT_OPERATOR,
            f"{what} is signed by {order.signed_by!r}; only {user} or the operator "
            f"{operator.user!r} may revoke {user}'s keys",
        )
    else:
        signer, signer_keys = f"the operator {operator.user}", operator.keys
    check_signed_with(
        what,
        order_bytes(order),
        signature=order.signature,
        key_id=order.signer_key_id,
        signed_at=signed_at,
        signer=signer,
        keys=signer_keys,
        current_at=now,
    )
