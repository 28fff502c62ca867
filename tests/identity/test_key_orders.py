"""Signed key orders, pure: a user's own current key, or the operator's for a revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobsheet.contracts.refusals import Refusal
from jobsheet.identity.key_orders import (
    check_add_key,
    check_revoke_key,
    sign_add_key,
    sign_revoke_key,
)
from jobsheet.identity.keys import PublicKeyRecord
from jobsheet.identity.models import OperatorKeys
from jobsheet.ledger import errors
from tests.ledger.factories import T0, identity

ALICE = identity("alice")
NEW = identity("alice")
MALLORY = identity("mallory")
OPERATOR = identity("operator-a1b2c3d4")
TRUSTED = OperatorKeys(user=OPERATOR.name, keys=[OPERATOR.public_record()])
KEYS = [ALICE.public_record()]


def refused(type_: str, check) -> None:
    with pytest.raises(Refusal) as caught:
        check()
    assert caught.value.type == type_, caught.value.message


def add(signer=ALICE, *, key=None, now=T0):
    return sign_add_key(
        signer,
        key or NEW.public_record(valid_from=now),
        idempotency_key="add-1",
        retire_others=True,
        now=now,
    )


def revoke(signer=ALICE, *, user="alice", key_id=ALICE.key_id, now=T0):
    return sign_revoke_key(signer, user=user, key_id=key_id, idempotency_key="rev-1", now=now)


def test_a_user_adds_a_key_with_a_current_key_of_their_own() -> None:
    check_add_key(add(), user="alice", keys=KEYS, now=T0 + timedelta(minutes=9))

    def check(order, *, user: str = "alice", keys: list[PublicKeyRecord] = KEYS, now=T0):
        return lambda: check_add_key(order, user=user, keys=keys, now=now)

    refused(errors.UNSIGNED, check(add().model_copy(update={"signature": ""})))
    refused(errors.WRONG_USER, check(add(MALLORY)))
    posing = add(MALLORY).model_copy(update={"user": "alice"})
    refused(errors.BAD_SIGNATURE, check(posing))
    swapped = add().model_copy(update={"key": MALLORY.public_record()})
    refused(errors.BAD_SIGNATURE, check(swapped))
    refused(errors.BAD_SIGNATURE, check(add().model_copy(update={"retire_others": False})))
    refused(errors.STALE_SIGNATURE, check(add(), now=T0 + timedelta(minutes=11)))
    refused(errors.WRONG_USER, check(add(), user="bob"))
    mislabelled = NEW.public_record().model_copy(update={"key_id": ALICE.key_id})
    refused(errors.INVALID_KEY, check(add(key=mislabelled)))
    # A key retired by a rotation or revoked signs no key order, even one dated before.
    retired = ALICE.public_record().model_copy(update={"valid_until": T0 + timedelta(minutes=1)})
    refused(errors.BAD_SIGNATURE, check(add(), keys=[retired], now=T0 + timedelta(minutes=2)))
    revoked = ALICE.public_record().model_copy(update={"revoked_at": T0 + timedelta(minutes=1)})
    refused(errors.BAD_SIGNATURE, check(add(), keys=[revoked], now=T0 + timedelta(minutes=2)))


def test_a_revocation_is_signed_by_the_user_or_the_operator() -> None:
    def check(order, *, operator: OperatorKeys | None = TRUSTED, now=T0):
        return lambda: check_revoke_key(order, user="alice", keys=KEYS, now=now, operator=operator)

    check(revoke())()
    check(revoke(), operator=None)()
    check(revoke(OPERATOR))()
    check(revoke(OPERATOR), operator=None)()  # a validator cannot tell yet; the handler will
    refused(errors.UNSIGNED, check(revoke().model_copy(update={"signature": ""})))
    refused(errors.NOT_OPERATOR, check(revoke(MALLORY)))
    posing = revoke(MALLORY).model_copy(update={"signed_by": OPERATOR.name})
    refused(errors.BAD_SIGNATURE, check(posing))
    refused(errors.BAD_SIGNATURE, check(revoke().model_copy(update={"key_id": NEW.key_id})))
    refused(errors.WRONG_USER, check(revoke(user="bob")))
    refused(errors.STALE_SIGNATURE, check(revoke(OPERATOR, now=T0 - timedelta(hours=1))))
