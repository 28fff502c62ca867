"""Account workflow histories replay deterministically with the current code.

``histories/account.json`` was recorded from a run of :func:`scenario`; set
``JOBSHEET_RECORD_HISTORIES=1`` to record it again after an intended change of behaviour.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from jobsheet.ledger import client as ledger
from jobsheet.ledger.models import ReceiptInput, RefundInput, account_workflow_id
from tests.ledger.conftest import Ledger
from tests.ledger.test_account_workflow import (
    cash_input,
    new_cheque,
    refused_with,
    state_of,
    wait_for,
)
from workflows.account import AccountWorkflow
from workflows.user import UserWorkflow

HISTORY = Path(__file__).parent / "histories" / "account.json"


async def scenario(env: Ledger) -> str:
    """Deposit, cash three cheques (one refused twice), receipt one, refund one, continue-as-new."""
    alice, shop = await env.user("alice"), await env.user("shop")
    payer = await env.account(alice, funds="80.00", continue_as_new_after=8)
    payee = await env.account(shop)
    first = await ledger.cash_cheque(env.client, cash_input(c1 := new_cheque(alice, payer, payee)))
    second = await ledger.cash_cheque(env.client, cash_input(new_cheque(alice, payer, payee)))
    await refused_with("ChequeAlreadyCashed", ledger.cash_cheque(env.client, cash_input(c1)))
    tampered = new_cheque(alice, payer, payee).model_copy(update={"max_spend": Decimal("9.00")})
    await refused_with("BadSignature", ledger.cash_cheque(env.client, cash_input(tampered, "9")))
    await ledger.receipt(
        env.client, ReceiptInput(idempotency_key="p", credit_note=first, amount=Decimal("2.50"))
    )
    await ledger.refund(env.client, RefundInput(idempotency_key="r", credit_note=second))

    async def done() -> bool:
        state = await state_of(env, payer)
        return not state.transfers and not state.unaudited

    await wait_for(done)
    return payer


async def test_recorded_account_history_replays() -> None:
    history = WorkflowHistory.from_json(account_workflow_id("recorded"), HISTORY.read_text())
    replayer = Replayer(workflows=[AccountWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


async def test_fresh_account_history_replays(ledger_env: Ledger) -> None:
    payer = await scenario(ledger_env)
    handle = ledger_env.client.get_workflow_handle(account_workflow_id(payer))
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[AccountWorkflow, UserWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)
    if os.environ.get("JOBSHEET_RECORD_HISTORIES") == "1":
        HISTORY.parent.mkdir(exist_ok=True)
        HISTORY.write_text(history.to_json())
