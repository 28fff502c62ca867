"""Authorisations: a user's signature over (resource, issued_at, nonce), usable once.

:func:`check_authorisation` is the pure part of verification (signature, exact resource, age with
a small clock-skew allowance). "Used at most once" needs memory, so the user registry workflow
consumes the nonce (see ``workflows/user.py``); the ``verify_authorisation`` activity does both.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, field_validator

from jobsheet.canonical import canonical_json
from jobsheet.cheque import as_utc
from jobsheet.identity import Identity, PublicKeyRecord
from jobsheet.ledger.errors import (
    AUTHORISATION_EXPIRED,
    AUTHORISATION_NOT_YET_VALID,
    BAD_SIGNATURE,
    WRONG_RESOURCE,
    Refused,
)
from jobsheet.names import Name

DEFAULT_MAX_AGE = timedelta(hours=2)
CLOCK_SKEW = timedelta(seconds=60)


class Authorisation(BaseModel):
    """``user`` authorises ``resource``; ``signature`` covers every other field."""

    user: Name
    resource: str
    issued_at: AwareDatetime
    nonce: str
    key_id: str
    signature: str = ""

    _utc = field_validator("issued_at")(as_utc)

    def signed_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))


def sign_authorisation(
    identity: Identity, resource: str, *, now: datetime | None = None, nonce: str | None = None
) -> Authorisation:
    """An authorisation by ``identity`` for exactly ``resource``."""
    unsigned = Authorisation(
        user=identity.name,
        resource=resource,
        issued_at=now or datetime.now(UTC),
        nonce=nonce or secrets.token_urlsafe(18),
        key_id=identity.key_id,
    )
    return unsigned.model_copy(update={"signature": identity.sign(unsigned.signed_bytes())})


def check_authorisation(
    authorisation: Authorisation,
    *,
    resource: str,
    keys: Sequence[PublicKeyRecord],
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    skew: timedelta = CLOCK_SKEW,
) -> None:
    """Raise :class:`Refused` unless the authorisation is for ``resource``, fresh and well signed.

    Age is compared with ``total_seconds()``: ``timedelta.seconds`` drops whole days, so a check
    on it would accept an authorisation exactly a day old.
    """
    if authorisation.resource != resource:
        raise Refused(WRONG_RESOURCE, "the authorisation is for another resource")
    age = (now - authorisation.issued_at).total_seconds()
    if age > (max_age + skew).total_seconds():
        raise Refused(
            AUTHORISATION_EXPIRED,
            f"the authorisation is {age:.0f}s old; the limit is {max_age.total_seconds():.0f}s",
        )
    if age < -skew.total_seconds():
        raise Refused(AUTHORISATION_NOT_YET_VALID, "the authorisation is dated in the future")
    for key in keys:
        if key.key_id == authorisation.key_id:
            if key.may_sign_at(authorisation.issued_at) and key.verifies(
                authorisation.signed_bytes(), authorisation.signature
            ):
                return
            break
    raise Refused(BAD_SIGNATURE, f"the authorisation is not validly signed by {authorisation.user}")
