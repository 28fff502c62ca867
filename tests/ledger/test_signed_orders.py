"""Temporal is private, in depth: a bare Temporal client cannot add money to an account.

Every request here goes straight to the account workflow through a raw client
(``handle.execute_update``), as a program that reaches the frontend without the operator's or
the ledger workers' keys would send it.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from activities.ledger import LedgerActivities
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.identity import registry
from jobsheet.identity.keys import Identity, generate_identity
from jobsheet.ledger import errors
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import (
    BalanceView,
    CreditInput,
    DepositInput,
    EntryKind,
    ReceiptInput,
    account_workflow_id,
)
from jobsheet.ledger.orders import ledger_signer, sign_credit, sign_deposit
from jobsheet.ledger.state import AccountState
from tests.ledger.conftest import Ledger
from tests.ledger.legacy_account import LegacyAccountWorkflow
from tests.ledger.test_account_workflow import cash_input, new_cheque, state_of, wait_for
from workflows.account import AccountWorkflow
from workflows.credit_note import CreditNoteWorkflow
from workflows.user import UserWorkflow


def raw_handle(env: Ledger, account: str) -> WorkflowHandle[Any, Any]:
    return env.client.get_workflow_handle(account_workflow_id(account))


async def refused(type_: str, handle: WorkflowHandle[Any, Any], update: str, arg: Any) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(update, arg, result_type=BalanceView)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert (cause.type, cause.non_retryable) == (type_, True), cause.message


def deposit(signer: Identity, account: str, amount: str = "50.00", **kwargs: Any) -> DepositInput:
    return sign_deposit(
        signer, account=account, amount=amount, idempotency_key=ledger.new_key(), **kwargs
    )


@pytest.fixture
async def account(ledger_env: Ledger) -> str:
    return await ledger_env.account(await ledger_env.user("alice"), funds="10.00")


async def test_deposits_need_the_operators_signature(ledger_env: Ledger, account: str) -> None:
    handle = raw_handle(ledger_env, account)
    before = await state_of(ledger_env, account)
    operator, mallory = ledger_env.operator, await ledger_env.user("mallory")
    other = await ledger_env.account(mallory)

    unsigned = DepositInput(idempotency_key=ledger.new_key(), amount=Decimal("50.00"))
    await refused(errors.UNSIGNED, handle, "deposit", unsigned)
    await refused(errors.NOT_OPERATOR, handle, "deposit", deposit(mallory, account))
    posing = deposit(mallory, account).model_copy(update={"signed_by": operator.name})
    await refused(errors.BAD_SIGNATURE, handle, "deposit", posing)
    more = deposit(operator, account).model_copy(update={"amount": Decimal("5000.00")})
    await refused(errors.BAD_SIGNATURE, handle, "deposit", more)
    elsewhere = deposit(operator, other)
    await refused(errors.WRONG_ACCOUNT, handle, "deposit", elsewhere)
    moved = elsewhere.model_copy(update={"account": account})
    await refused(errors.BAD_SIGNATURE, handle, "deposit", moved)
    stale = deposit(operator, account, now=datetime.now(UTC) - timedelta(hours=1))
    await refused(errors.STALE_SIGNATURE, handle, "deposit", stale)

    after = await state_of(ledger_env, account)
    assert (after.balance, after.seq, after.remembered) == (
        before.balance,
        before.seq,
        before.remembered,
    )
    assert (await ledger.balance(ledger_env.client, other)).balance == 0

    # A forgery did not use up its key: the operator's own order under that key still lands,
    # and a second order under it gets the first answer.
    key = more.idempotency_key
    signed = sign_deposit(operator, account=account, amount="50.00", idempotency_key=key)
    view = await handle.execute_update("deposit", signed, result_type=BalanceView)
    assert view.balance == Decimal("60.00")
    resent = sign_deposit(operator, account=account, amount="70.00", idempotency_key=key)
    again = await handle.execute_update("deposit", resent, id="resent", result_type=BalanceView)
    assert again == view
    assert (await ledger.balance(ledger_env.client, account)).balance == Decimal("60.00")


async def test_credits_need_the_ledger_workers_signature(ledger_env: Ledger, account: str) -> None:
    handle = raw_handle(ledger_env, account)
    before = await state_of(ledger_env, account)
    mallory = await ledger_env.user("mallory")
    request = CreditInput(
        idempotency_key="tr-cn-forged",
        from_account="acct-nowhere",
        amount=Decimal("1000.00"),
        reference="cn-forged",
    )
    ledger_key = ledger_signer(ledger_env.settings.ledger_private_key())

    await refused(errors.UNSIGNED, handle, "credit", request)
    forged = sign_credit(mallory, request, account=account)
    await refused(errors.BAD_SIGNATURE, handle, "credit", forged)
    for_another = sign_credit(ledger_key, request, account="acct-somewhere-else")
    await refused(errors.BAD_SIGNATURE, handle, "credit", for_another)
    genuine = sign_credit(ledger_key, request, account=account)
    more = genuine.model_copy(update={"amount": Decimal("9000.00")})
    await refused(errors.BAD_SIGNATURE, handle, "credit", more)

    after = await state_of(ledger_env, account)
    assert (after.balance, after.seq, after.credited) == (
        before.balance,
        before.seq,
        before.credited,
    )
    # The same request signed by the ledger's key is credited, once.
    view = await handle.execute_update("credit", genuine, result_type=BalanceView)
    assert view.balance == Decimal("1010.00")
    twice = await handle.execute_update("credit", genuine, id="again", result_type=BalanceView)
    assert twice.balance == Decimal("1010.00")


async def test_a_delivered_credit_names_its_job(ledger_env: Ledger) -> None:
    """A receipt's payment reaches the recipient signed; every line of it names the job."""
    alice, shop = await ledger_env.user("alice"), await ledger_env.user("shop")
    payer = await ledger_env.account(alice, funds="20.00")
    payee = await ledger_env.account(shop)
    client = ledger_env.client
    request = cash_input(new_cheque(alice, payer, payee)).model_copy(update={"job_uid": "job-42"})
    note = await ledger.cash_cheque(client, request)
    assert note.job_uid == "job-42"
    await ledger.receipt(
        client, ReceiptInput(idempotency_key="pay", credit_note=note, amount=Decimal("4.00"))
    )

    async def delivered() -> bool:
        return (await ledger.balance(client, payee)).balance == Decimal("4.00")

    await wait_for(delivered)
    paid = await ledger.statement(client, payer)
    lines = {entry.kind: entry.job_uid for entry in paid.entries}
    assert lines == {
        EntryKind.DEPOSIT: "",
        EntryKind.HOLD: "job-42",
        EntryKind.RECEIPT: "job-42",
        EntryKind.RELEASE: "job-42",
        EntryKind.TRANSFER_DELIVERED: "job-42",
    }
    credit = (await ledger.statement(client, payee)).entries[-1]
    assert (credit.kind, credit.job_uid, credit.amount) == (
        EntryKind.CREDIT,
        "job-42",
        Decimal("4.00"),
    )


async def test_an_account_running_before_the_patch_checks_signatures_from_then_on(
    client: Client, settings: Settings, task_queue: str
) -> None:
    """An account whose run began on the old code: its old unsigned deposit and credit replay
    as they were, and what arrives once today's code runs it must be signed."""
    operator = generate_identity(f"operator-{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(update={"operator_user": operator.name})
    activities = LedgerActivities(client, settings, internal_client(settings))

    def worker(account_workflow: type, **options: Any) -> Worker:
        return Worker(
            client,
            task_queue=task_queue,
            workflows=[account_workflow, UserWorkflow],
            activities=activities.all(),
            **options,
        )

    # No cache (so no sticky queue): the next workflow task goes to whichever worker is up.
    async with worker(LegacyAccountWorkflow, max_cached_workflows=0):
        await registry.register_user(client, operator, task_queue=task_queue)
        alice = generate_identity(f"alice-{uuid.uuid4().hex[:8]}")
        await registry.register_user(client, alice, task_queue=task_queue)
        account = await ledger.open_account(client, owner=alice.name, task_queue=task_queue)
        handle = client.get_workflow_handle(account_workflow_id(account))
        old = DepositInput(idempotency_key="old-deposit", amount=Decimal("10.00"))
        await handle.execute_update("deposit", old, result_type=BalanceView)
        gift = CreditInput(
            idempotency_key="old-credit", from_account="acct-x", amount=1, reference="r"
        )
        await handle.execute_update("credit", gift, result_type=BalanceView)

        async def audited() -> bool:
            state = await handle.query("state", result_type=AccountState)
            return not state.unaudited

        await wait_for(audited)  # so that no workflow task is left with the stopping worker

    async with worker(AccountWorkflow):
        # Signed-looking, but with no key behind it: the validators let these through, so only
        # the handlers' checks, on the patched path, stand in their way.
        fake = DepositInput(
            idempotency_key="fake-deposit",
            amount=Decimal("5000.00"),
            account=account,
            signed_by=operator.name,
            key_id=operator.key_id,
            signed_at=datetime.now(UTC),
            signature=base64.b64encode(b"x" * 64).decode(),
        )
        await refused(errors.BAD_SIGNATURE, handle, "deposit", fake)
        forged = gift.model_copy(
            update={"idempotency_key": "fake-credit", "signature": fake.signature}
        )
        await refused(errors.BAD_SIGNATURE, handle, "credit", forged)
        assert (await ledger.balance(client, account)).balance == Decimal("11.00")
        view = await ledger.deposit(client, account, "4.00", operator=operator)
        assert view.balance == Decimal("15.00")

    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[AccountWorkflow, CreditNoteWorkflow], data_converter=client.data_converter
    )
    await replayer.replay_workflow(history)
