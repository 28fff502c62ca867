"""The pure ledger state machine refuses every bad cheque and changes nothing when it does."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from jobsheet.contracts.refusals import Refusal
from jobsheet.identity.keys import PublicKeyRecord
from jobsheet.ledger import errors
from jobsheet.ledger.models import HoldStatus
from jobsheet.ledger.state import AccountState
from tests.ledger.factories import RESOURCE, T0, cheque, funded, identity, readd

HOUR = timedelta(hours=1)


def cash(
    state: AccountState,
    keys: list[PublicKeyRecord],
    chq,
    *,
    key: str = "k",
    spend: str = "30.00",
    recipient: str = "acct-provider",
    resource: str = RESOURCE,
    now=T0,
):
    return state.cash_cheque(
        key,
        chq,
        spend=Decimal(spend),
        recipient=recipient,
        resource=resource,
        receipt_within=HOUR,
        keys=keys,
        now=now,
    )


def refused(type_: str, fn, *args, **kwargs) -> None:
    with pytest.raises(Refusal) as caught:
        fn(*args, **kwargs)
    assert caught.value.type == type_, caught.value.message


def test_cash_places_a_hold_and_a_second_cashing_changes_nothing() -> None:
    alice = identity()
    state = funded(alice)
    keys = [alice.public_record()]
    chq = cheque(alice)
    note = cash(state, keys, chq, key="first")
    assert (state.balance, state.held, state.available) == (Decimal("100"), Decimal("30"), 70)
    before = state.model_dump()
    refused(errors.CHEQUE_ALREADY_CASHED, cash, state, keys, chq, key="second")
    after = state.model_dump()
    after["remembered"].pop("second")
    assert after == before
    # The same idempotency key gets the same note back and changes nothing.
    assert cash(state, keys, chq, key="first") == note
    assert state.held == Decimal("30.00")


@pytest.mark.parametrize(
    ("type_", "changes"),
    [
        (errors.CHEQUE_EXPIRED, {"now": T0 + HOUR}),
        (errors.WRONG_RESOURCE, {"resource": "sha256:" + "cd" * 32}),
        (errors.WRONG_RECIPIENT, {"recipient": "acct-mallory"}),
        (errors.OVER_MAX_SPEND, {"spend": "30.01"}),
        (errors.INSUFFICIENT_FUNDS, {"spend": "30.00", "funds": "29.99"}),
    ],
)
def test_bad_cashings_are_refused_and_change_nothing(type_: str, changes: dict) -> None:
    alice = identity()
    state = funded(alice, changes.pop("funds", "100.00"))
    before = state.model_dump()
    refused(type_, cash, state, [alice.public_record()], cheque(alice), key="bad", **changes)
    after = state.model_dump()
    after["remembered"].pop("bad")
    assert after == before


def test_overdraft_limit_allows_going_below_zero_and_no_further() -> None:
    alice = identity()
    state = funded(alice, "10.00")
    state.overdraft_limit = Decimal("20.00")
    cash(state, [alice.public_record()], cheque(alice), spend="30.00")
    assert state.available == Decimal("-20.00")
    refused(
        errors.INSUFFICIENT_FUNDS,
        cash,
        state,
        [alice.public_record()],
        cheque(alice),
        key="more",
        spend="0.01",
    )


def test_signature_checks() -> None:
    alice, mallory = identity("alice"), identity("mallory")
    state = funded(alice)
    keys = [alice.public_record()]
    forged = cheque(mallory).model_copy(update={"drawer": "alice"})
    refused(errors.BAD_SIGNATURE, cash, state, keys, forged, key="forged")
    tampered = cheque(alice).model_copy(update={"max_spend": Decimal("99.00")})
    refused(errors.BAD_SIGNATURE, cash, state, keys, tampered, key="tampered")
    refused(errors.NOT_ACCOUNT_OWNER, cash, state, keys, cheque(mallory), key="not-owner")
    refused(errors.WRONG_ACCOUNT, cash, state, keys, cheque(alice, account="acct-b"), key="acct")
    assert state.held == 0


def test_rotated_key_verifies_what_it_signed_before_and_revoked_key_signs_nothing_new() -> None:
    alice = identity()
    state = funded(alice)
    old = alice.public_record().model_copy(update={"valid_until": T0})
    before_rotation = cheque(alice, now=T0 - timedelta(minutes=5))
    after_rotation = cheque(alice, now=T0 + timedelta(minutes=5))
    cash(state, [old], before_rotation, key="before", spend="10.00", now=T0)
    refused(errors.BAD_SIGNATURE, cash, state, [old], after_rotation, key="after", now=T0)
    revoked = alice.public_record().model_copy(update={"revoked_at": T0})
    refused(errors.BAD_SIGNATURE, cash, state, [revoked], after_rotation, key="revoked", now=T0)


def test_receipt_pays_at_most_the_hold_and_a_closed_note_stays_closed() -> None:
    alice = identity()
    state = funded(alice)
    note = cash(state, [alice.public_record()], cheque(alice))
    refused(errors.OVER_HELD, state.receipt, "too-much", note, Decimal("30.01"), T0)
    result = state.receipt("pay", note, Decimal("12.50"), T0)
    assert (result.paid, result.released) == (Decimal("12.50"), Decimal("17.50"))
    assert state.receipt("pay", note, Decimal("12.50"), T0) == result  # retried: same answer
    assert (state.balance, state.held, state.in_flight) == (Decimal("87.50"), 0, Decimal("12.50"))
    refused(errors.CREDIT_NOTE_CLOSED, state.refund, "refund", note, T0)
    refused(errors.CREDIT_NOTE_CLOSED, state.receipt, "again", note, Decimal("1.00"), T0)
    assert state.holds[note.uid].status is HoldStatus.RECEIPTED
    state.transfer_delivered(result.transfer_id or "", T0)
    state.transfer_delivered(result.transfer_id or "", T0)
    assert (state.balance, state.held, state.in_flight) == (Decimal("87.50"), 0, 0)
    assert readd(state.unaudited) == (state.balance, state.held, state.in_flight)


def test_open_holds_are_refunded_at_receipt_by() -> None:
    alice = identity()
    state = funded(alice)
    note = cash(state, [alice.public_record()], cheque(alice))
    assert state.expire_holds(T0 + HOUR - timedelta(seconds=1)) == []
    assert [r.released for r in state.expire_holds(T0 + HOUR)] == [Decimal("30.00")]
    assert state.holds[note.uid].status is HoldStatus.REFUNDED
    assert (state.balance, state.held) == (Decimal("100.00"), 0)
    refused(errors.CREDIT_NOTE_CLOSED, state.receipt, "late", note, Decimal("1.00"), T0 + HOUR)


def test_prune_keeps_cashed_cheques_until_they_expire() -> None:
    alice = identity()
    state = funded(alice)
    chq = cheque(alice, valid_for=timedelta(hours=3))
    note = cash(state, [alice.public_record()], chq)
    state.refund("r", note, T0)
    state.prune(T0 + timedelta(hours=2))
    assert chq.uid in state.cashed
    refused(
        errors.CHEQUE_ALREADY_CASHED,
        cash,
        state,
        [alice.public_record()],
        chq,
        key="x",
        now=T0 + timedelta(hours=2),
    )
    state.prune(T0 + timedelta(hours=4))
    assert chq.uid not in state.cashed
    refused(
        errors.CHEQUE_EXPIRED,
        cash,
        state,
        [alice.public_record()],
        chq,
        key="y",
        now=T0 + timedelta(hours=4),
    )


def test_credit_once_per_transfer() -> None:
    bob = identity("bob")
    state = funded(bob, "0")
    state.credit("tr-1", "acct-a", Decimal("5.00"), "cn-1", T0)
    state.credit("tr-1", "acct-a", Decimal("5.00"), "cn-1", T0)
    assert state.balance == Decimal("5.00")


def test_balances_stay_within_the_money_bound() -> None:
    state = funded(identity(), "999999990.00")
    refused(errors.INVALID_AMOUNT, state.deposit, "big", Decimal("10.01"), T0)
    refused(errors.INVALID_AMOUNT, state.credit, "tr-big", "acct-x", Decimal("10.01"), "", T0)
    state.deposit("fits", Decimal("10.00"), T0)
    assert state.view().balance == Decimal("1000000000.00")
