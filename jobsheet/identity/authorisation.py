"""Authorisations: a user's signature over (resource, issued_at, nonce), usable once.

:func:`check_authorisation` is the pure part of verification, in two steps: whether the signature
verifies (:func:`verify_authorisation_signature`) and whether what it signs is acceptable now
(:func:`check_authorisation_terms`: the signing key's period, the exact resource, age with a small
clock-skew allowance). "Used at most once" needs memory, so the user registry workflow consumes
the nonce (see ``workflows/user.py``); the job's ``verify_cancel`` step consumes it as soon as
the signature verifies, before the terms are checked, so a well-signed authorisation that is
refused (too young, too old, for another resource) can never be used later either. A submission
consumes no nonce: its job uid is derived from the signature, and a job's id is never reused.

The signature is canonical base64 (:func:`jobsheet.identity.keys.check_signature_text`): the job uid
is derived from its bytes, and no second spelling of one signature is accepted anywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, field_validator

from jobsheet.contracts.refusals import Refusal
from jobsheet.core.canonical import as_utc, canonical_json
from jobsheet.core.names import Name
from jobsheet.identity.keys import Identity, PublicKeyRecord, check_signature_text
from jobsheet.ledger.errors import (
    AUTHORISATION_EXPIRED,
    AUTHORISATION_NOT_YET_VALID,
    BAD_SIGNATURE,
    WRONG_RESOURCE,
)

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
    _canonical = field_validator("signature")(check_signature_text)

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


def verify_authorisation_signature(
    authorisation: Authorisation, *, keys: Sequence[PublicKeyRecord]
) -> PublicKeyRecord:
    """The key of ``keys`` (the user's registered keys) whose signature this is; else
    :class:`Refusal` (``BadSignature``). Whether the key could sign then is a term, checked by
    :func:`check_authorisation_terms`."""
    for key in keys:
        if key.key_id == authorisation.key_id:
            if key.verifies(authorisation.signed_bytes(), authorisation.signature):
                return key
            break
    raise Refusal(BAD_SIGNATURE, f"the authorisation is not validly signed by {authorisation.user}")


def check_authorisation_terms(
    authorisation: Authorisation,
    *,
    key: PublicKeyRecord,
    resource: str,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    skew: timedelta = CLOCK_SKEW,
) -> None:
    """Raise :class:`Refusal` unless the authorisation (signed by ``key``) is for ``resource``,
    fresh, and dated in ``key``'s signing period (checked in that order).

    Age is compared with ``total_seconds()``: ``timedelta.seconds`` drops whole days, so a check
    on it would accept an authorisation exactly a day old.
    """
    if authorisation.resource != resource:
        raise Refusal(WRONG_RESOURCE, "the authorisation is for another resource")
    age = (now - authorisation.issued_at).total_seconds()
    if age > (max_age + skew).total_seconds():
        raise Refusal(
            AUTHORISATION_EXPIRED,
            f"the authorisation is {age:.0f}s old; the limit is {max_age.total_seconds():.0f}s",
        )
    if age < -skew.total_seconds():
        raise Refusal(AUTHORISATION_NOT_YET_VALID, "the authorisation is dated in the future")
    if not key.may_sign_at(authorisation.issued_at):
        raise Refusal(
            BAD_SIGNATURE,
            f"the authorisation is signed with key {key.key_id} outside its signing period "
            "(rotated or revoked)",
        )


def check_authorisation(
    authorisation: Authorisation,
    *,
    resource: str,
    keys: Sequence[PublicKeyRecord],
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    skew: timedelta = CLOCK_SKEW,
) -> None:
    """Raise :class:`Refusal` unless the authorisation is well signed by one of ``keys``, for
    ``resource``, and fresh (the signature first, then the terms)."""
    key = verify_authorisation_signature(authorisation, keys=keys)
    check_authorisation_terms(
        authorisation, key=key, resource=resource, now=now, max_age=max_age, skew=skew
    )
