"""Account workflow histories replay deterministically with the current code.

``histories/account.json`` was recorded from a run of :func:`scenario` before deposits and
credits were signed; it is kept as it is, to prove the ``ledger-signed-orders`` patch leaves old
histories on their old path. ``histories/account-signed.json`` is a run of
:func:`signed_scenario`; set ``JOBSHEET_RECORD_HISTORIES=1`` to record it again after an
intended change of behaviour.
"""

from __future__ import annotations

import base64
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
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

HISTORIES = Path(__file__).parent / "histories"
SIGNED_HISTORY = HISTORIES / "account-signed.json"


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


async def signed_scenario(env: Ledger) -> str:
    """A signed deposit, a cheque cashed and receipted (its payment delivered to the payee), and
    a credit the payee's own receipt delivers back: all on the payer's history."""
    alice, shop = await env.user("alice"), await env.user("shop")
    payer = await env.account(alice, funds="30.00")
    payee = await env.account(shop, funds="30.00")
    paying = cash_input(new_cheque(alice, payer, payee)).model_copy(update={"job_uid": "job-out"})
    out = await ledger.cash_cheque(env.client, paying)
    await ledger.receipt(
        env.client, ReceiptInput(idempotency_key="p1", credit_note=out, amount=Decimal("5.00"))
    )
    paid = cash_input(new_cheque(shop, payee, payer)).model_copy(update={"job_uid": "job-in"})
    back = await ledger.cash_cheque(env.client, paid)
    await ledger.receipt(
        env.client, ReceiptInput(idempotency_key="p2", credit_note=back, amount=Decimal("2.00"))
    )

    async def done() -> bool:
        states = [await state_of(env, account) for account in (payer, payee)]
        settled = all(not s.transfers and not s.unaudited for s in states)
        return settled and states[0].balance == Decimal("27.00")

    await wait_for(done)
    return payer


def _covered(path: Path) -> str:
    """Marker names and details (decoded) and accepted update names of a recorded history."""
    found = []
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker:
            found.append(marker["markerName"])
            for detail in marker.get("details", {}).values():
                for payload in detail.get("payloads", []):
                    found.append(base64.b64decode(payload.get("data", "")).decode(errors="replace"))
        accepted = event.get("workflowExecutionUpdateAcceptedEventAttributes")
        if accepted:
            found.append(f"update:{accepted['acceptedRequest']['input']['name']}")
    return "\n".join(found)


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(account_workflow_id(path.stem), path.read_text())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_account_history_replays(path: Path) -> None:
    history = _history(path)
    replayer = Replayer(workflows=[AccountWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def test_the_signed_history_covers_signed_deposits_and_credits() -> None:
    covered = _covered(SIGNED_HISTORY)
    for what in (
        "ledger-signed-orders",
        "operator_keys",
        "ledger_public_key",
        "update:deposit",
        "update:cash_cheque",
        "update:receipt",
        "update:credit",
    ):
        assert what in covered, what
    assert "ledger-signed-orders" not in _covered(HISTORIES / "account.json")


async def _replay_fresh(env: Ledger, account: str) -> WorkflowHistory:
    history = await env.client.get_workflow_handle(account_workflow_id(account)).fetch_history()
    replayer = Replayer(
        workflows=[AccountWorkflow, UserWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)
    return history


async def test_fresh_account_history_replays(ledger_env: Ledger) -> None:
    await _replay_fresh(ledger_env, await scenario(ledger_env))


async def test_fresh_signed_account_history_replays(ledger_env: Ledger) -> None:
    history = await _replay_fresh(ledger_env, await signed_scenario(ledger_env))
    if os.environ.get("JOBSHEET_RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(exist_ok=True)
        SIGNED_HISTORY.write_text(history.to_json())
