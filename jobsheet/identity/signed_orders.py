"""What every signed order checks: the bytes signed, the order's age, and a key that may sign.

Deposits and overdraft limits (:mod:`jobsheet.ledger.orders`) and key orders
(:mod:`jobsheet.identity.key_orders`) are pydantic models whose ``signature`` covers every other
field; these pure helpers sign and check them alike. Callers pass the keys and ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel

from jobsheet.contracts.refusals import Refusal
from jobsheet.core.canonical import canonical_json
from jobsheet.identity.keys import PublicKeyRecord
from jobsheet.ledger.errors import BAD_SIGNATURE, STALE_SIGNATURE

ORDER_MAX_AGE = timedelta(minutes=10)
"""How old a signed order (deposit, overdraft, key order) may be when it is applied (retries
included)."""
ORDER_MAX_SKEW = timedelta(minutes=1)
"""How far in the future an order may be dated (the signer's clock may run ahead)."""


def order_bytes(order: BaseModel) -> bytes:
    """The canonical bytes a signer signs: every field of the order but the signature."""
    return canonical_json(order.model_dump(mode="json", exclude={"signature"}))


def check_fresh(
    what: str,
    signed_at: datetime,
    *,
    now: datetime,
    max_age: timedelta = ORDER_MAX_AGE,
    skew: timedelta = ORDER_MAX_SKEW,
) -> None:
    """Raise :class:`Refusal` (``StaleSignature``) unless ``signed_at`` is recent at ``now``."""
    age = now - signed_at
    if age > max_age:
        raise Refusal(
            STALE_SIGNATURE,
            f"{what} was signed {age.total_seconds():.0f}s ago; the limit is "
            f"{max_age.total_seconds():.0f}s: sign it again",
        )
    if age < -skew:
        raise Refusal(STALE_SIGNATURE, f"{what} is dated in the future")


def check_signed_with(
    what: str,
    message: bytes,
    *,
    signature: str,
    key_id: str,
    signed_at: datetime,
    signer: str,
    keys: Sequence[PublicKeyRecord],
    current_at: datetime | None = None,
) -> None:
    """Raise :class:`Refusal` (``BadSignature``) unless ``signer``'s key ``key_id`` (one of
    ``keys``) may sign at ``signed_at`` (and, with ``current_at``, still may then) and signed
    ``message``."""
    for record in keys:
        if record.key_id == key_id:
            periods = [signed_at] if current_at is None else [signed_at, current_at]
            if not all(record.may_sign_at(at) for at in periods):
                raise Refusal(
                    BAD_SIGNATURE,
                    f"{what} is signed with key {key_id} outside its signing period "
                    "(rotated or revoked)",
                )
            if not record.verifies(message, signature):
                raise Refusal(BAD_SIGNATURE, f"{what} has a bad signature")
            return
    raise Refusal(BAD_SIGNATURE, f"{what} is signed with a key {signer} never had")
