"""Account workflows on the dev server: refusals, concurrency, idempotency, receipts, refunds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from jobsheet.identity.keys import Identity
from jobsheet.ledger import errors
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.cheque import Cheque, write_cheque
from jobsheet.ledger.models import (
    CashChequeInput,
    CreditNote,
    ReceiptInput,
    RefundInput,
    account_workflow_id,
)
from jobsheet.ledger.state import AccountState
from tests.ledger.conftest import Ledger

RESOURCE = "sha256:" + "12" * 32


def cash_input(
    chq: Cheque, spend: str = "10.00", *, recipient: str | None = None, resource: str = RESOURCE
) -> CashChequeInput:
    return CashChequeInput(
        idempotency_key=ledger.new_key("cash"),
        cheque=chq,
        spend=Decimal(spend),
        recipient=recipient or chq.recipient,
        resource=resource,
    )


def new_cheque(owner: Identity, account: str, recipient: str, **kwargs) -> Cheque:
    kwargs.setdefault("max_spend", "10.00")
    return write_cheque(owner, account=account, recipient=recipient, resource=RESOURCE, **kwargs)


async def state_of(env: Ledger, account: str) -> AccountState:
    handle = env.client.get_workflow_handle(account_workflow_id(account))
    return await handle.query("state", result_type=AccountState)


async def refused_with(type_: str, coro) -> None:
    with pytest.raises(ApplicationError) as caught:
        await coro
    assert caught.value.type == type_, caught.value.message
    assert caught.value.non_retryable


@pytest.fixture
async def parties(ledger_env: Ledger) -> tuple[Identity, str, str]:
    alice, shop = await ledger_env.user("alice"), await ledger_env.user("shop")
    payer = await ledger_env.account(alice, funds="100.00")
    payee = await ledger_env.account(shop)
    return alice, payer, payee


async def test_bad_cheques_are_refused_and_change_nothing(
    ledger_env: Ledger, parties: tuple[Identity, str, str]
) -> None:
    alice, payer, payee = parties
    client = ledger_env.client
    before = (await ledger.balance(client, payer)).model_dump()
    past = datetime.now(UTC) - timedelta(hours=3)
    expired = new_cheque(alice, payer, payee, now=past, valid_for=timedelta(hours=1))
    await refused_with(errors.CHEQUE_EXPIRED, ledger.cash_cheque(client, cash_input(expired)))
    chq = new_cheque(alice, payer, payee)
    other = cash_input(chq, resource="sha256:" + "99" * 32)
    await refused_with(errors.WRONG_RESOURCE, ledger.cash_cheque(client, other))
    thief = cash_input(chq, recipient="acct-mallory")
    await refused_with(errors.WRONG_RECIPIENT, ledger.cash_cheque(client, thief))
    await refused_with(errors.OVER_MAX_SPEND, ledger.cash_cheque(client, cash_input(chq, "10.01")))
    tampered = chq.model_copy(update={"max_spend": Decimal("90.00")})
    await refused_with(errors.BAD_SIGNATURE, ledger.cash_cheque(client, cash_input(tampered, "90")))
    mallory = await ledger_env.user("mallory")
    stranger = new_cheque(mallory, payer, payee)
    await refused_with(errors.NOT_ACCOUNT_OWNER, ledger.cash_cheque(client, cash_input(stranger)))
    nowhere = new_cheque(alice, "acct-nowhere", payee)
    await refused_with(errors.UNKNOWN_ACCOUNT, ledger.cash_cheque(client, cash_input(nowhere)))
    assert (await ledger.balance(client, payer)).model_dump() == before

    note = await ledger.cash_cheque(client, cash_input(chq))
    after_first = await state_of(ledger_env, payer)
    await refused_with(errors.CHEQUE_ALREADY_CASHED, ledger.cash_cheque(client, cash_input(chq)))
    after_second = await state_of(ledger_env, payer)
    assert (after_second.balance, after_second.held) == (Decimal("100.00"), Decimal("10.00"))
    assert after_second.holds == after_first.holds
    assert after_second.seq == after_first.seq
    assert note.held == Decimal("10.00")


async def test_fifty_concurrent_cashings_with_funds_for_twenty(
    ledger_env: Ledger, parties: tuple[Identity, str, str]
) -> None:
    alice, payer, payee = parties  # 100.00 = 20 x 5.00
    cheques = [new_cheque(alice, payer, payee, max_spend="5.00") for _ in range(50)]
    outcomes = await asyncio.gather(
        *(ledger.cash_cheque(ledger_env.client, cash_input(c, "5.00")) for c in cheques),
        return_exceptions=True,
    )
    notes = [o for o in outcomes if isinstance(o, CreditNote)]
    failures = [o for o in outcomes if not isinstance(o, CreditNote)]
    assert len(notes) == 20
    assert all(isinstance(f, ApplicationError) for f in failures), [
        repr(f) for f in failures if not isinstance(f, ApplicationError)
    ][:3]
    assert {f.type for f in failures if isinstance(f, ApplicationError)} == {
        errors.INSUFFICIENT_FUNDS
    }
    view = await ledger.balance(ledger_env.client, payer)
    assert (view.balance, view.held, view.available) == (Decimal("100.00"), 100, 0)


async def test_same_cheque_cashed_ten_times_concurrently_succeeds_once(
    ledger_env: Ledger, parties: tuple[Identity, str, str]
) -> None:
    alice, payer, payee = parties
    chq = new_cheque(alice, payer, payee)
    outcomes = await asyncio.gather(
        *(ledger.cash_cheque(ledger_env.client, cash_input(chq)) for _ in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(o, CreditNote) for o in outcomes) == 1
    assert all(
        isinstance(o, CreditNote)
        or (isinstance(o, ApplicationError) and o.type == errors.CHEQUE_ALREADY_CASHED)
        for o in outcomes
    )
    assert (await ledger.balance(ledger_env.client, payer)).held == Decimal("10.00")


async def test_retried_operations_change_nothing_twice(
    ledger_env: Ledger, parties: tuple[Identity, str, str]
) -> None:
    alice, payer, payee = parties
    client = ledger_env.client
    key = ledger.new_key("deposit")
    await ledger_env.deposit(payer, "5.00", idempotency_key=key)
    await ledger_env.deposit(payer, "5.00", idempotency_key=key)
    request = cash_input(new_cheque(alice, payer, payee))
    first, again = await asyncio.gather(
        ledger.cash_cheque(client, request), ledger.cash_cheque(client, request)
    )
    assert first == again == await ledger.cash_cheque(client, request)
    receipt = ReceiptInput(idempotency_key="pay-1", credit_note=first, amount=Decimal("4.00"))
    paid = await ledger.receipt(client, receipt)
    assert await ledger.receipt(client, receipt) == paid
    view = await ledger.balance(client, payer)
    assert (view.balance, view.held) == (Decimal("101.00"), 0)


async def test_receipt_pays_the_recipient_and_releases_the_rest(
    ledger_env: Ledger, parties: tuple[Identity, str, str]
) -> None:
    alice, payer, payee = parties
    client = ledger_env.client
    note = await ledger.cash_cheque(client, cash_input(new_cheque(alice, payer, payee)))
    over = ReceiptInput(idempotency_key="over", credit_note=note, amount=Decimal("10.01"))
    await refused_with(errors.OVER_HELD, ledger.receipt(client, over))
    pay = ReceiptInput(idempotency_key="pay", credit_note=note, amount=Decimal("7.25"))
    result = await ledger.receipt(client, pay)
    assert (result.paid, result.released) == (Decimal("7.25"), Decimal("2.75"))
    refund = RefundInput(idempotency_key="refund", credit_note=note)
    await refused_with(errors.CREDIT_NOTE_CLOSED, ledger.refund(client, refund))
    await wait_for(lambda: _delivered(ledger_env, payer))
    assert (await ledger.balance(client, payee)).balance == Decimal("7.25")
    view = await ledger.balance(client, payer)
    assert (view.balance, view.held, view.in_flight) == (Decimal("92.75"), 0, 0)

    second = await ledger.cash_cheque(client, cash_input(new_cheque(alice, payer, payee)))
    released = await ledger.refund(client, RefundInput(idempotency_key="r2", credit_note=second))
    assert released.released == Decimal("10.00")
    late = ReceiptInput(idempotency_key="late", credit_note=second, amount=Decimal("1.00"))
    await refused_with(errors.CREDIT_NOTE_CLOSED, ledger.receipt(client, late))
    assert (await ledger.balance(client, payer)).available == Decimal("92.75")


async def test_payment_to_an_account_that_does_not_exist_comes_back(
    ledger_env: Ledger, parties: tuple[Identity, str, str]
) -> None:
    alice, payer, _ = parties
    client = ledger_env.client
    chq = new_cheque(alice, payer, f"acct-missing-{uuid.uuid4().hex[:6]}")
    note = await ledger.cash_cheque(client, cash_input(chq))
    await ledger.receipt(
        client, ReceiptInput(idempotency_key="pay", credit_note=note, amount=Decimal("3.00"))
    )
    await wait_for(lambda: _delivered(ledger_env, payer))
    view = await ledger.balance(client, payer)
    assert (view.balance, view.held, view.in_flight) == (Decimal("100.00"), 0, 0)


async def _delivered(env: Ledger, account: str) -> bool:
    state = await state_of(env, account)
    return not state.transfers and not state.unaudited


async def wait_for(check, *, attempts: int = 200) -> None:
    """Poll ``check`` until it holds (not a timing assertion: it fails only if it never holds)."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")
