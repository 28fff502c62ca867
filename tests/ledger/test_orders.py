"""Signed ledger orders, pure: deposits and overdraft limits the operator signs, credits the
ledger workers sign."""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import Decimal

import pytest

from jobsheet.contracts.refusals import Refusal
from jobsheet.identity.keys import IdentityError, save_identity
from jobsheet.identity.models import OperatorKeys
from jobsheet.ledger import errors
from jobsheet.ledger.models import CreditInput
from jobsheet.ledger.orders import (
    check_credit,
    check_deposit,
    check_overdraft,
    ledger_signer,
    load_operator,
    sign_credit,
    sign_deposit,
    sign_overdraft,
)
from jobsheet.ledger.state import AccountState
from tests.ledger.factories import T0, identity

OPERATOR = identity("operator-a1b2c3d4")
MALLORY = identity("mallory")
TRUSTED = OperatorKeys(user=OPERATOR.name, keys=[OPERATOR.public_record()])
LEDGER = ledger_signer(base64.b64encode(b"k" * 32).decode())


def order(amount: str = "25.00", *, account: str = "acct-a", signer=OPERATOR, now=T0):
    return sign_deposit(signer, account=account, amount=amount, idempotency_key="dep-1", now=now)


def refused(type_: str, check) -> None:
    with pytest.raises(Refusal) as caught:
        check()
    assert caught.value.type == type_, caught.value.message


def test_a_deposit_signed_by_the_operator_passes() -> None:
    check_deposit(order(), account="acct-a", now=T0, operator=TRUSTED)
    check_deposit(order(), account="acct-a", now=T0 + timedelta(minutes=9), operator=TRUSTED)


def test_deposits_not_signed_by_the_operator_are_refused() -> None:
    def check(o, *, account: str = "acct-a", now=T0, operator=TRUSTED):
        return lambda: check_deposit(o, account=account, now=now, operator=operator)

    unsigned = order().model_copy(update={"signature": ""})
    refused(errors.UNSIGNED, check(unsigned))
    refused(errors.UNSIGNED, check(unsigned, operator=None))
    refused(errors.NOT_OPERATOR, check(order(signer=MALLORY)))
    # Mallory claims to be the operator: her key is not one of the operator's.
    posing = order(signer=MALLORY).model_copy(update={"signed_by": OPERATOR.name})
    refused(errors.BAD_SIGNATURE, check(posing))
    refused(errors.BAD_SIGNATURE, check(order().model_copy(update={"amount": Decimal("99.00")})))
    refused(errors.WRONG_ACCOUNT, check(order(), account="acct-b"))
    moved = order().model_copy(update={"account": "acct-b"})
    refused(errors.BAD_SIGNATURE, check(moved, account="acct-b"))
    refused(errors.STALE_SIGNATURE, check(order(), now=T0 + timedelta(minutes=11)))
    refused(errors.STALE_SIGNATURE, check(order(), now=T0 - timedelta(minutes=2)))
    revoked = OPERATOR.public_record().model_copy(update={"revoked_at": T0 - timedelta(hours=1)})
    refused(
        errors.BAD_SIGNATURE,
        check(order(), operator=TRUSTED.model_copy(update={"keys": [revoked]})),
    )


def test_the_state_machine_verifies_a_deposit_once_and_forgets_a_forgery() -> None:
    state = AccountState(account="acct-a", owner="alice")
    forged = order().model_copy(update={"amount": Decimal("99.00")})

    def verify(o):
        return lambda: check_deposit(o, account="acct-a", now=T0, operator=TRUSTED)

    with pytest.raises(Refusal):
        state.deposit("dep-1", forged.amount, T0, verify=verify(forged))
    assert state.balance == 0 and not state.has_seen("dep-1")
    good = order()
    assert state.deposit("dep-1", good.amount, T0, verify=verify(good)).balance == 25
    # Already applied: the first answer, without verifying again.
    later = T0 + timedelta(hours=1)
    assert state.deposit("dep-1", good.amount, later, verify=verify(forged)).balance == 25
    assert state.balance == Decimal("25.00")


def test_a_signed_deposit_is_applied_once_even_after_its_answer_is_forgotten() -> None:
    state = AccountState(account="acct-a", owner="alice")
    good = order()

    def deposit(now):
        def verify() -> None:
            check_deposit(good, account="acct-a", now=now, operator=TRUSTED)

        return state.deposit("dep-1", good.amount, now, verify=verify, signed_at=good.signed_at)

    deposit(T0)
    state.remembered.clear()  # as after continue-as-new on a very busy account
    assert deposit(T0 + timedelta(minutes=5)).balance == Decimal("25.00")
    state.prune(T0 + timedelta(minutes=30))
    assert "dep-1" in state.deposited
    state.prune(T0 + timedelta(hours=2))
    assert not state.deposited


def test_credits_verify_only_with_the_ledger_key_for_their_account() -> None:
    key = LEDGER.public_record()
    request = CreditInput(
        idempotency_key="tr-cn-1",
        from_account="acct-a",
        amount=Decimal("3.00"),
        reference="cn-1",
        job_uid="job-1",
    )
    signed = sign_credit(LEDGER, request, account="acct-b")
    check_credit(signed, account="acct-b", key=key)
    refused(errors.UNSIGNED, lambda: check_credit(request, account="acct-b", key=key))
    refused(errors.UNSIGNED, lambda: check_credit(request, account="acct-b", key=None))
    refused(errors.BAD_SIGNATURE, lambda: check_credit(signed, account="acct-c", key=key))
    for field, value in [("amount", Decimal("30.00")), ("job_uid", "job-2"), ("from_account", "x")]:
        tampered = signed.model_copy(update={field: value})
        refused(errors.BAD_SIGNATURE, lambda t=tampered: check_credit(t, account="acct-b", key=key))
    mallory = sign_credit(MALLORY, request, account="acct-b")
    refused(errors.BAD_SIGNATURE, lambda: check_credit(mallory, account="acct-b", key=key))


def test_a_bad_ledger_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="JOBSHEET_LEDGER_KEY"):
        ledger_signer("not base64!")
    with pytest.raises(ValueError, match="32 raw"):
        ledger_signer(base64.b64encode(b"short").decode())


def test_the_operator_key_is_read_from_the_config_dir_then_the_state_dir(tmp_path) -> None:
    config, state = tmp_path / "config", tmp_path / "state"
    with pytest.raises(IdentityError, match="operator"):
        load_operator(OPERATOR.name, config_dir=config, state_dir=state)
    save_identity(OPERATOR, config_dir=state)
    found = load_operator(OPERATOR.name, config_dir=config, state_dir=state)
    assert found.key_id == OPERATOR.key_id
    other = identity(OPERATOR.name)
    save_identity(other, config_dir=config)
    assert load_operator(OPERATOR.name, config_dir=config, state_dir=state).key_id == other.key_id


def test_an_overdraft_limit_is_the_operators_order_applied_once() -> None:
    signed = sign_overdraft(
        OPERATOR, account="acct-a", limit="40.00", idempotency_key="od-1", now=T0
    )
    check_overdraft(signed, account="acct-a", now=T0, operator=TRUSTED)
    refused(
        errors.UNSIGNED,
        lambda: check_overdraft(
            signed.model_copy(update={"signature": ""}), account="acct-a", now=T0, operator=None
        ),
    )
    bigger = signed.model_copy(update={"limit": Decimal("4000.00")})
    refused(
        errors.BAD_SIGNATURE,
        lambda: check_overdraft(bigger, account="acct-a", now=T0, operator=TRUSTED),
    )
    mallorys = sign_overdraft(MALLORY, account="acct-a", limit="40", idempotency_key="od-2", now=T0)
    refused(
        errors.NOT_OPERATOR,
        lambda: check_overdraft(mallorys, account="acct-a", now=T0, operator=TRUSTED),
    )
    refused(
        errors.WRONG_ACCOUNT,
        lambda: check_overdraft(signed, account="acct-b", now=T0, operator=TRUSTED),
    )
    # A key revoked since signs no overdraft order, even one dated before its revocation.
    revoked = OPERATOR.public_record().model_copy(update={"revoked_at": T0 + timedelta(minutes=1)})
    gone = TRUSTED.model_copy(update={"keys": [revoked]})
    later = T0 + timedelta(minutes=2)
    refused(
        errors.BAD_SIGNATURE,
        lambda: check_overdraft(signed, account="acct-a", now=later, operator=gone),
    )

    state = AccountState(account="acct-a", owner="alice")

    def apply(order, now=T0):
        def verify() -> None:
            check_overdraft(order, account="acct-a", now=now, operator=TRUSTED)

        return state.set_overdraft_limit(
            order.idempotency_key, order.limit, now, verify=verify, signed_at=order.signed_at
        )

    with pytest.raises(Refusal):
        apply(bigger)
    assert state.overdraft_limit == 0 and not state.has_seen("od-1")
    assert apply(signed).overdraft_limit == Decimal("40.00")
    lower = sign_overdraft(OPERATOR, account="acct-a", limit="5", idempotency_key="od-3", now=T0)
    assert apply(lower).overdraft_limit == Decimal("5.00")
    # The first order again (its answer forgotten, as on a very busy account) changes nothing.
    state.remembered.clear()
    assert apply(signed, T0 + timedelta(minutes=5)).overdraft_limit == Decimal("5.00")
