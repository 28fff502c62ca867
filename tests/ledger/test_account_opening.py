"""Temporal is private, in depth: whoever starts an account workflow cannot give it money.

A raw client starts accounts with the inputs a program that reaches the frontend could choose:
carried state with a balance, a ledger key of its own, an overdraft limit. Only the account's own
continue-as-new carries state, and only the operator's signed order sets an overdraft.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from jobsheet.identity import registry
from jobsheet.ledger import errors
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.calls import OpenAccountInput
from jobsheet.ledger.models import CreditInput, OverdraftInput, account_workflow_id
from jobsheet.ledger.orders import sign_credit, sign_overdraft
from jobsheet.ledger.state import AccountState
from tests.ledger.conftest import Ledger
from tests.ledger.test_account_workflow import cash_input, new_cheque, refused_with, state_of
from tests.ledger.test_signed_orders import raw_handle, refused
from workflows.account import AccountWorkflow


def new_account() -> str:
    return f"acct-{uuid.uuid4().hex[:12]}"


async def test_a_fresh_start_with_carried_state_or_ledger_key_fails(ledger_env: Ledger) -> None:
    client = ledger_env.client
    mallory = await ledger_env.user("mallory")
    rich = AccountState(account="", owner=mallory.name, balance=Decimal("1000000.00"))
    credit = CreditInput(
        idempotency_key="tr-forged", from_account="acct-x", amount=Decimal("500.00"), reference="r"
    )
    evil = new_account()
    starts: list[tuple[str, dict[str, Any]]] = [
        (evil, {"state": rich.model_copy(update={"account": evil})}),
        (new_account(), {"ledger_key": mallory.public_record()}),
    ]
    for account, extra in starts:
        handle = await client.start_workflow(
            AccountWorkflow.run,
            OpenAccountInput(account=account, owner=mallory.name, **extra),
            id=account_workflow_id(account),
            task_queue=ledger_env.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError)
        assert (cause.type, cause.non_retryable) == (errors.FORGED_STATE, True)
        # No account takes money with what the start brought: a credit signed with Mallory's
        # key finds no running account.
        with pytest.raises(Exception):  # noqa: B017 - the workflow has failed: any error will do
            await ledger.credit(client, account, sign_credit(mallory, credit, account=account))


async def test_a_new_account_opens_without_the_overdraft_its_starter_asks_for(
    ledger_env: Ledger,
) -> None:
    client, operator = ledger_env.client, ledger_env.operator
    mallory = await ledger_env.user("mallory")
    shop = await ledger_env.account(await ledger_env.user("shop"))
    account = new_account()
    await client.start_workflow(
        AccountWorkflow.run,
        OpenAccountInput(account=account, owner=mallory.name, overdraft_limit=Decimal("500.00")),
        id=account_workflow_id(account),
        task_queue=ledger_env.task_queue,
    )
    assert (await ledger.balance(client, account)).overdraft_limit == 0
    await refused_with(
        errors.INSUFFICIENT_FUNDS,
        ledger.cash_cheque(client, cash_input(new_cheque(mallory, account, shop), "5.00")),
    )

    handle = raw_handle(ledger_env, account)
    unsigned = OverdraftInput(idempotency_key="od-1", account=account, limit=Decimal("500.00"))
    await refused(errors.UNSIGNED, handle, "set_overdraft_limit", unsigned)

    def order(signer=operator, **kwargs) -> OverdraftInput:
        return sign_overdraft(
            signer, account=account, limit="500.00", idempotency_key=ledger.new_key(), **kwargs
        )

    await refused(errors.NOT_OPERATOR, handle, "set_overdraft_limit", order(mallory))
    posing = order(mallory).model_copy(update={"signed_by": operator.name})
    await refused(errors.BAD_SIGNATURE, handle, "set_overdraft_limit", posing)
    stale = order(now=datetime.now(UTC) - timedelta(hours=1))
    await refused(errors.STALE_SIGNATURE, handle, "set_overdraft_limit", stale)
    more = order().model_copy(update={"limit": Decimal("9000.00")})
    await refused(errors.BAD_SIGNATURE, handle, "set_overdraft_limit", more)
    state = await state_of(ledger_env, account)
    assert (state.overdraft_limit, state.remembered) == (0, {})

    view = await ledger.set_overdraft_limit(client, account, "20.00", operator=operator)
    assert view.overdraft_limit == Decimal("20.00")
    note = await ledger.cash_cheque(client, cash_input(new_cheque(mallory, account, shop), "5.00"))
    assert note.held == Decimal("5.00")


async def test_the_operator_opens_an_account_with_an_overdraft(ledger_env: Ledger) -> None:
    client, operator = ledger_env.client, ledger_env.operator
    alice = await ledger_env.user("alice")
    account = await ledger_env.account(alice, overdraft_limit="25.00")
    view = await ledger.balance(client, account)
    assert (view.overdraft_limit, view.balance) == (Decimal("25.00"), 0)
    with pytest.raises(ValueError, match="operator"):
        await ledger.open_account(
            client, owner=alice.name, task_queue=ledger_env.task_queue, overdraft_limit="5.00"
        )
    await refused_with(
        errors.ACCOUNT_EXISTS,
        ledger.open_account(
            client,
            owner=alice.name,
            account=account,
            task_queue=ledger_env.task_queue,
            overdraft_limit="5.00",
            operator=operator,
        ),
    )
    assert (await ledger.balance(client, account)).overdraft_limit == Decimal("25.00")


async def test_what_does_not_exist_is_named_as_the_caller_named_it(ledger_env: Ledger) -> None:
    """No workflow id in a refusal: an unknown account or user is named as the caller named it."""
    client = ledger_env.client
    with pytest.raises(ApplicationError) as no_account:
        await ledger.balance(client, "nosuch-acct")
    assert no_account.value.type == errors.UNKNOWN_ACCOUNT
    assert no_account.value.message == "account nosuch-acct does not exist"
    with pytest.raises(ApplicationError) as no_deposit:
        await ledger_env.deposit("nosuch-acct", "1.00")
    assert no_deposit.value.message == "account nosuch-acct does not exist"
    with pytest.raises(ApplicationError) as no_user:
        await registry.user_keys(client, "nobody-here")
    assert no_user.value.type == errors.UNKNOWN_USER
    assert no_user.value.message == "user nobody-here does not exist"
