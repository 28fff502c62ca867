"""Authorisations: exact resource, bounded age (a day old is refused), good signature."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobsheet.contracts.refusals import Refusal
from jobsheet.identity.authorisation import (
    check_authorisation,
    check_authorisation_terms,
    sign_authorisation,
    verify_authorisation_signature,
)
from jobsheet.ledger import errors
from tests.ledger.factories import RESOURCE, T0, identity

ALICE = identity("alice")
KEYS = [ALICE.public_record()]


@pytest.fixture
def alice():
    return ALICE


def check(auth, *, now=T0, resource=RESOURCE, keys=KEYS, **kwargs) -> None:
    check_authorisation(auth, resource=resource, keys=keys, now=now, **kwargs)


def refused(type_: str, *args, **kwargs) -> None:
    with pytest.raises(Refusal) as caught:
        check(*args, **kwargs)
    assert caught.value.type == type_


def test_fresh_authorisation_for_the_resource_is_accepted(alice) -> None:
    check(sign_authorisation(alice, RESOURCE, now=T0 - timedelta(minutes=5)))


def test_authorisation_exactly_a_day_old_is_refused(alice) -> None:
    auth = sign_authorisation(alice, RESOURCE, now=T0 - timedelta(days=1))
    assert (T0 - auth.issued_at).seconds == 0  # a check on .seconds would accept it
    refused(errors.AUTHORISATION_EXPIRED, auth)


def test_authorisation_older_than_max_age_is_refused_and_max_age_is_configurable(alice) -> None:
    auth = sign_authorisation(alice, RESOURCE, now=T0 - timedelta(hours=2, minutes=2))
    refused(errors.AUTHORISATION_EXPIRED, auth)
    check(auth, max_age=timedelta(hours=3))
    refused(errors.AUTHORISATION_EXPIRED, auth, max_age=timedelta(minutes=30))


def test_clock_skew_allowance_is_small(alice) -> None:
    check(sign_authorisation(alice, RESOURCE, now=T0 + timedelta(seconds=30)))
    refused(
        errors.AUTHORISATION_NOT_YET_VALID,
        sign_authorisation(alice, RESOURCE, now=T0 + timedelta(minutes=5)),
    )


def test_authorisation_for_another_resource_is_refused(alice) -> None:
    refused(errors.WRONG_RESOURCE, sign_authorisation(alice, RESOURCE), resource="sha256:other")


def test_forged_or_tampered_authorisation_is_refused(alice) -> None:
    mallory = identity("mallory")
    forged = sign_authorisation(mallory, RESOURCE, now=T0).model_copy(update={"user": alice.name})
    refused(errors.BAD_SIGNATURE, forged)
    tampered = sign_authorisation(alice, "sha256:other", now=T0).model_copy(
        update={"resource": RESOURCE}
    )
    refused(errors.BAD_SIGNATURE, tampered)
    revoked = [alice.public_record().model_copy(update={"revoked_at": T0 - timedelta(hours=1)})]
    refused(errors.BAD_SIGNATURE, sign_authorisation(alice, RESOURCE, now=T0), keys=revoked)


def test_the_signature_is_checked_apart_from_the_terms(alice) -> None:
    """verify_authorisation consumes the nonce once the signature verifies, whatever the terms
    say after that; so the signature check must accept a well-signed authorisation that the
    terms then refuse, and refuse a bad signature whatever its terms."""
    refused_by_terms = [
        (sign_authorisation(alice, RESOURCE, now=T0 + timedelta(minutes=5)), RESOURCE),
        (sign_authorisation(alice, RESOURCE, now=T0 - timedelta(days=1)), RESOURCE),
        (sign_authorisation(alice, RESOURCE, now=T0), "sha256:other"),
    ]
    for auth, resource in refused_by_terms:
        key = verify_authorisation_signature(auth, keys=KEYS)
        assert key.key_id == alice.key_id
        with pytest.raises(Refusal):
            check_authorisation_terms(auth, key=key, resource=resource, now=T0)
    mallory = identity("mallory")
    forged = sign_authorisation(mallory, RESOURCE, now=T0).model_copy(update={"user": alice.name})
    with pytest.raises(Refusal) as caught:
        verify_authorisation_signature(forged, keys=KEYS)
    assert caught.value.type == errors.BAD_SIGNATURE
