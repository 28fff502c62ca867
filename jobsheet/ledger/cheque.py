"""Cheques: an account owner's signed promise to pay at most ``max_spend`` to one recipient.

A cheque names the account it draws on, the recipient account that may cash it, the resource
(a job request's fingerprint) it pays for, its expiry and a uid. The owner signs the canonical
encoding of everything but the signature, with a key registered in the service's user registry.
The signature is canonical base64 (one spelling per signature), checked when the model is built
and again when it is verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, field_validator, model_validator

from jobsheet.contracts.refusals import Refusal
from jobsheet.core.canonical import as_utc, canonical_json
from jobsheet.core.money import PositiveMoney, to_money
from jobsheet.core.names import Name
from jobsheet.identity.keys import Identity, PublicKeyRecord, check_signature_text
from jobsheet.ledger.errors import BAD_SIGNATURE


class Cheque(BaseModel):
    """A signed cheque; ``signature`` covers every other field."""

    uid: str
    account: Name
    drawer: Name
    recipient: Name
    resource: str
    max_spend: PositiveMoney
    expires_at: AwareDatetime
    signed_at: AwareDatetime
    key_id: str
    signature: str = ""

    _utc = field_validator("expires_at", "signed_at")(as_utc)
    _canonical = field_validator("signature")(check_signature_text)

    @model_validator(mode="after")
    def _recipient_is_another_account(self) -> Cheque:
        if self.recipient == self.account:
            raise ValueError("a cheque cannot pay the account it draws on")
        return self

    def signed_bytes(self) -> bytes:
        """The canonical bytes the drawer signs."""
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    def verify_signature(self, keys: Sequence[PublicKeyRecord]) -> None:
        """Raise ``BadSignature`` unless one of ``keys`` signed this cheque while it could sign."""
        for key in keys:
            if key.key_id == self.key_id:
                if not key.may_sign_at(self.signed_at):
                    raise Refusal(
                        BAD_SIGNATURE,
                        f"cheque {self.uid} is signed with key {self.key_id} outside its "
                        "signing period (rotated or revoked)",
                    )
                if not key.verifies(self.signed_bytes(), self.signature):
                    raise Refusal(BAD_SIGNATURE, f"cheque {self.uid} has a bad signature")
                return
        raise Refusal(
            BAD_SIGNATURE, f"cheque {self.uid} is signed with a key {self.drawer} never registered"
        )


def write_cheque(
    identity: Identity,
    *,
    account: str,
    recipient: str,
    resource: str,
    max_spend: Decimal | int | str,
    expires_at: datetime | None = None,
    valid_for: timedelta = timedelta(hours=2),
    now: datetime | None = None,
    uid: str | None = None,
) -> Cheque:
    """A cheque on ``account`` signed by ``identity`` (who must own the account)."""
    signed_at = now or datetime.now(UTC)
    cheque = Cheque(
        uid=uid or f"chq-{uuid.uuid4()}",
        account=account,
        drawer=identity.name,
        recipient=recipient,
        resource=resource,
        max_spend=to_money(max_spend),
        expires_at=expires_at or signed_at + valid_for,
        signed_at=signed_at,
        key_id=identity.key_id,
    )
    return cheque.model_copy(update={"signature": identity.sign(cheque.signed_bytes())})
