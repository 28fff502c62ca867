"""One signature, one spelling: every other base64 spelling of a real signature or key is refused.

Python's decoder is lenient: ``b64decode(..., validate=True)`` ignores the four padding bits of a
64-byte signature's last character (so 16 characters spell the same bytes), and without
``validate`` it also skips whitespace, junk and excess padding. The spellings below are generated
from a real signature and each is shown to decode to the same bytes before it is shown refused,
by the model, by every verifier and by ``job_uid_for``.
"""

from __future__ import annotations

import base64
import hashlib
import string
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from jobsheet.contracts.api import strict_public_key
from jobsheet.contracts.refusals import Refusal
from jobsheet.identity.authorisation import Authorisation, check_authorisation, sign_authorisation
from jobsheet.identity.key_orders import check_add_key, check_new_key, sign_add_key
from jobsheet.identity.keys import PublicKeyRecord, signature_bytes, strict_b64decode
from jobsheet.identity.models import OperatorKeys
from jobsheet.identity.trust import BadOperatorKey, anchored_record
from jobsheet.jobs.models import job_uid_for
from jobsheet.ledger import errors
from jobsheet.ledger.cheque import Cheque, write_cheque
from jobsheet.ledger.orders import check_deposit, sign_deposit
from tests.ledger.factories import RESOURCE, T0, identity

ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
DECORATIONS = [
    lambda s: s,
    lambda s: s + "=",  # excess padding
    lambda s: s + "==",
    lambda s: s + "\n",  # a trailing newline, as files and MIME encoders write
    lambda s: " " + s,
    lambda s: s[:76] + "\r\n" + s[76:],  # MIME line breaks
    lambda s: s[:10] + "\t" + s[10:],
    lambda s: s[:20] + "!" + s[20:],  # junk the lenient decoder discards
]

ALICE = identity("alice")
OPERATOR = identity("operator")


def lenient(text: str) -> bytes | None:
    """What Python's decoders make of ``text`` (validating first, then leniently)."""
    for validate in (True, False):
        try:
            return base64.b64decode(text, validate=validate)
        except ValueError:
            continue
    return None


def decodes_validating(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def other_spellings(canonical: str) -> list[str]:
    """Every spelling of ``canonical``'s bytes that Python accepts, but for ``canonical``."""
    raw = base64.b64decode(canonical)
    body = canonical.rstrip("=")
    padding = "=" * (len(canonical) - len(body))
    found = set()
    for last in ALPHABET:
        for decorate in DECORATIONS:
            spelling = decorate(body[:-1] + last + padding)
            if spelling != canonical and lenient(spelling) == raw:
                found.add(spelling)
    return sorted(found)


def missing_padding(canonical: str) -> list[str]:
    """The spellings without (some of) their padding: Python refuses these itself."""
    body = canonical.rstrip("=")
    return [body + "=" * n for n in range(len(canonical) - len(body))]


AUTH = sign_authorisation(ALICE, RESOURCE, now=T0 - timedelta(minutes=1))
SIGNATURES = other_spellings(AUTH.signature)
KEY = ALICE.public_record().public_key
KEYS = other_spellings(KEY)


def test_python_accepts_many_spellings_of_one_signature() -> None:
    raw = signature_bytes(AUTH.signature)
    validating = [s for s in SIGNATURES if decodes_validating(s) == raw]
    # The last character carries 2 data bits and 4 padding bits: 15 other characters.
    assert len(validating) == 15
    assert len(SIGNATURES) == 16 * len(DECORATIONS) - 1
    assert len(KEYS) == 4 * len(DECORATIONS) - 1


@pytest.mark.parametrize("spelling", SIGNATURES + missing_padding(AUTH.signature))
def test_every_other_spelling_of_a_signature_is_refused(spelling: str) -> None:
    keys = [ALICE.public_record()]
    assert keys[0].verifies(AUTH.signed_bytes(), AUTH.signature)
    assert not keys[0].verifies(AUTH.signed_bytes(), spelling)
    with pytest.raises(ValueError):
        signature_bytes(spelling)
    with pytest.raises(ValueError):
        job_uid_for(spelling)

    # The models refuse it (an API body naming it is a 422)...
    with pytest.raises(ValidationError):
        Authorisation.model_validate({**AUTH.model_dump(mode="json"), "signature": spelling})
    # ...and so does every verifier, for whatever gets past a model.
    forged_auth = AUTH.model_copy(update={"signature": spelling})
    with pytest.raises(Refusal) as caught:
        check_authorisation(forged_auth, resource=RESOURCE, keys=keys, now=T0)
    assert caught.value.type == errors.BAD_SIGNATURE


def test_cheques_and_orders_refuse_other_spellings() -> None:
    keys = [ALICE.public_record()]
    operator = OperatorKeys(user=OPERATOR.name, keys=[OPERATOR.public_record()])
    cheque = write_cheque(
        ALICE, account="acct-a", recipient="provider", resource=RESOURCE, max_spend="5.00", now=T0
    )
    deposit = sign_deposit(OPERATOR, account="acct-a", amount="5.00", idempotency_key="d", now=T0)
    order = sign_add_key(
        ALICE, identity("alice").public_record(), idempotency_key="k", retire_others=False, now=T0
    )
    signed: list[tuple[BaseModel, Callable[[Any], None]]] = [
        (cheque, lambda c: c.verify_signature(keys)),
        (deposit, lambda d: check_deposit(d, account="acct-a", now=T0, operator=operator)),
        (order, lambda o: check_add_key(o, user=ALICE.name, keys=keys, now=T0)),
    ]
    for model, check in signed:
        check(model)  # the canonical spelling is accepted
        spellings = other_spellings(model.signature)  # type: ignore[attr-defined]
        assert len(spellings) == 16 * len(DECORATIONS) - 1
        for spelling in spellings:
            with pytest.raises(Refusal) as caught:
                check(model.model_copy(update={"signature": spelling}))
            assert caught.value.type == errors.BAD_SIGNATURE
    with pytest.raises(ValidationError):
        Cheque.model_validate(
            {**cheque.model_dump(mode="json"), "signature": other_spellings(cheque.signature)[0]}
        )


@pytest.mark.parametrize("spelling", KEYS + missing_padding(KEY))
def test_every_other_spelling_of_a_public_key_is_refused(spelling: str) -> None:
    with pytest.raises(ValueError):
        strict_public_key(spelling)
    with pytest.raises(ValueError):
        strict_b64decode(spelling, size=32)
    with pytest.raises(BadOperatorKey):
        anchored_record(spelling)
    record = ALICE.public_record()
    other = record.model_copy(update={"public_key": spelling})
    with pytest.raises(Refusal) as caught:
        check_new_key(other)
    assert caught.value.type == errors.INVALID_KEY
    # A registry record holding a non-canonical key verifies nothing.
    assert not PublicKeyRecord.model_validate(other.model_dump()).verifies(
        AUTH.signed_bytes(), AUTH.signature
    )


def test_the_job_uid_is_derived_from_the_signature_bytes() -> None:
    raw = signature_bytes(AUTH.signature)
    assert job_uid_for(AUTH.signature) == "job-" + hashlib.sha256(raw).hexdigest()[:32]
    # An unsigned authorisation has one uid of its own (and its job is rejected).
    assert job_uid_for("") == "job-" + hashlib.sha256(b"").hexdigest()[:32]
