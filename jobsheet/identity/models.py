"""The identity registry's boundary models: key orders, nonces, key lookups and authorisations.

A user's registry is the workflow ``user-<name>`` (``workflows/user.py``); these are the inputs
and results of its updates and of the activities that read keys or verify authorisations. Each
order carries its own ``idempotency_key``: the same key applied twice changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from jobsheet.core.canonical import as_utc_or_none
from jobsheet.identity.authorisation import Authorisation
from jobsheet.identity.keys import PublicKeyRecord


def user_workflow_id(name: str) -> str:
    """The id of the workflow that keeps user ``name``'s public keys and used nonces."""
    return f"user-{name}"


class KeysLookupInput(BaseModel):
    user: str


class OperatorKeys(BaseModel):
    """The user the ledger workers trust to sign deposits, and that user's registered keys."""

    user: str
    keys: list[PublicKeyRecord]


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
    """An order to add ``key`` to ``user``'s keys; with ``retire_others`` every older key stops
    signing when it is applied (a rotation).

    Signed by a current key of that user (``signer_key_id``; see
    ``jobsheet.identity.key_orders``); ``signature`` covers every other field. The signer's fields
    default to empty only so that histories recorded before key orders were signed still decode.
    """

    idempotency_key: str
    key: PublicKeyRecord
    retire_others: bool = True
    user: str = ""
    signer_key_id: str = ""
    signed_at: AwareDatetime | None = None
    signature: str = ""

    _utc = field_validator("signed_at")(as_utc_or_none)


class RevokeKeyInput(BaseModel):
    """An order to revoke ``user``'s key ``key_id``, signed by a current key of that user or, for
    a stolen key, by the operator (``signed_by``). ``signature`` covers every other field."""

    idempotency_key: str
    key_id: str
    user: str = ""
    signed_by: str = ""
    signer_key_id: str = ""
    signed_at: AwareDatetime | None = None
    signature: str = ""

    _utc = field_validator("signed_at")(as_utc_or_none)


class UseNonceInput(BaseModel):
    idempotency_key: str
    nonce: str
    issued_at: AwareDatetime
