"""Account and user workflow histories replay deterministically with the current code.

``histories/account.json`` was recorded from a run of :func:`scenario` before deposits and
credits were signed; it is kept as it is, to prove the ``ledger-signed-orders`` and
``ledger-start-checks`` patches leave old histories on their old path.
``histories/account-signed.json`` is a run of :func:`signed_scenario` recorded before the start
checks (``JOBSHEET_RECORD_HISTORIES=signed`` records it again, on today's path).
``histories/user-signed.json`` (:func:`user_scenario`) and ``histories/account-overdraft-*.json``
(the two runs of :func:`overdraft_scenario`) and ``histories/account-notes-*.json`` with
``histories/credit-note-*.json`` (:func:`notes_scenario`: credit notes as workflows of their own)
are today's paths; set ``JOBSHEET_RECORD_HISTORIES=1`` to record them again after an intended
change of behaviour (``=notes`` records only the notes' ones: the overdraft histories were
recorded before the notes patch and keep proving its old path).
"""

from __future__ import annotations

import base64
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.core.temporal import data_converter
from jobsheet.identity import registry
from jobsheet.identity.key_orders import sign_add_key, sign_revoke_key
from jobsheet.identity.keys import Identity, generate_identity
from jobsheet.identity.models import RegisterKeyInput, user_workflow_id
from jobsheet.ledger import errors
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import ReceiptInput, RefundInput, account_workflow_id
from tests.histories import in_clear
from tests.ledger.conftest import Ledger
from tests.ledger.test_account_workflow import (
    cash_input,
    new_cheque,
    refused_with,
    state_of,
    wait_for,
)
from workflows.account import AccountWorkflow
from workflows.credit_note import CreditNoteWorkflow
from workflows.user import UserWorkflow

HISTORIES = Path(__file__).parent / "histories"
SIGNED_HISTORY = HISTORIES / "account-signed.json"
USER_HISTORY = HISTORIES / "user-signed.json"
OPENED_HISTORY = HISTORIES / "account-overdraft-opened.json"
CONTINUED_HISTORY = HISTORIES / "account-overdraft-continued.json"
NOTES_HISTORIES = {
    name: HISTORIES / f"{name}.json"
    for name in (
        "account-notes-opened",
        "account-notes-continued",
        "credit-note-receipted",
        "credit-note-refunded",
    )
}


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


async def user_scenario(env: Ledger) -> str:
    """Key orders on one user's registry: an added key, a revocation and a rotation signed by the
    user, a stolen key revoked by the operator, and a forged revocation the workflow refuses."""
    alice = await env.user("alice")
    second, third = generate_identity(alice.name), generate_identity(alice.name)
    handle = env.client.get_workflow_handle(user_workflow_id(alice.name))

    def key_order(signer: Identity, key: Identity, *, retire_others: bool) -> RegisterKeyInput:
        return sign_add_key(
            signer,
            key.public_record(),
            idempotency_key=ledger.new_key("add"),
            retire_others=retire_others,
        )

    await registry.add_key(env.client, key_order(alice, second, retire_others=False))
    await registry.revoke_key(env.client, second, user=alice.name, key_id=alice.key_id)
    await registry.add_key(env.client, key_order(second, third, retire_others=True))
    await registry.revoke_key(env.client, env.operator, user=alice.name, key_id=second.key_id)
    forged = sign_revoke_key(
        generate_identity(env.operator.name),
        user=alice.name,
        key_id=third.key_id,
        idempotency_key="forged",
    )
    await refused_with(errors.BAD_SIGNATURE, registry.apply_revocation(env.client, forged))
    keys = await handle.query(UserWorkflow.keys)
    assert [key.revoked_at is not None for key in keys] == [True, True, False]
    return alice.name


async def notes_scenario(env: Ledger) -> dict[str, WorkflowHistory]:
    """Credit notes as workflows of their own: two cheques cashed, one note receipted in part
    (its payment delivered), one refunded, and the account continuing as new after four
    operations with a third note still open: the account's two runs and the two notes."""
    alice, shop = await env.user("alice"), await env.user("shop")
    payer = await env.account(alice, funds="40.00", continue_as_new_after=4)
    payee = await env.account(shop)
    paid = await ledger.cash_cheque(env.client, cash_input(new_cheque(alice, payer, payee)))
    back = await ledger.cash_cheque(env.client, cash_input(new_cheque(alice, payer, payee)))
    await ledger.receipt(
        env.client, ReceiptInput(idempotency_key="p", credit_note=paid, amount=Decimal("4.00"))
    )
    await ledger.refund(env.client, RefundInput(idempotency_key="r", credit_note=back))
    await ledger.cash_cheque(env.client, cash_input(new_cheque(alice, payer, payee)))
    handle = env.client.get_workflow_handle(account_workflow_id(payer))

    async def done() -> bool:
        state = await state_of(env, payer)
        info = (await handle.describe()).raw_description.workflow_execution_info
        continued = info.first_run_id != info.execution.run_id
        quiet = not state.transfers and not state.notes_to_start and not state.unaudited
        return continued and state.notes_open == 1 and quiet

    await wait_for(done)
    latest = await handle.fetch_history()
    started = latest.events[0].workflow_execution_started_event_attributes
    first = env.client.get_workflow_handle(handle.id, run_id=started.first_execution_run_id)
    return {
        "account-notes-opened": await first.fetch_history(),
        "account-notes-continued": latest,
        "credit-note-receipted": await ledger.note_handle(env.client, paid).fetch_history(),
        "credit-note-refunded": await ledger.note_handle(env.client, back).fetch_history(),
    }


async def overdraft_scenario(env: Ledger) -> list[WorkflowHistory]:
    """An account the operator opens with an overdraft (update-with-start), spent into and then
    funded, continuing as new after three operations: the histories of its two runs."""
    alice, shop = await env.user("alice"), await env.user("shop")
    payer = await env.account(alice, overdraft_limit="20.00", continue_as_new_after=3)
    payee = await env.account(shop)
    note = await ledger.cash_cheque(env.client, cash_input(new_cheque(alice, payer, payee), "8"))
    await env.deposit(payer, "5.00")
    await ledger.receipt(
        env.client, ReceiptInput(idempotency_key="p", credit_note=note, amount=Decimal("6.00"))
    )

    async def done() -> bool:
        state = await state_of(env, payer)
        return state.balance == Decimal("-1.00") and not state.transfers and not state.unaudited

    await wait_for(done)
    workflow_id = account_workflow_id(payer)
    latest = await env.client.get_workflow_handle(workflow_id).fetch_history()
    started = latest.events[0].workflow_execution_started_event_attributes
    first = env.client.get_workflow_handle(workflow_id, run_id=started.first_execution_run_id)
    return [await first.fetch_history(), latest]


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
    return WorkflowHistory.from_json(path.stem, path.read_text())


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    history = _history(path)
    # The product's converter: what it did not encrypt (every recorded payload) it reads as is.
    replayer = Replayer(
        workflows=[AccountWorkflow, CreditNoteWorkflow, UserWorkflow],
        data_converter=data_converter(PayloadKeyRing.generate()),
    )
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
    assert "ledger-start-checks" not in _covered(HISTORIES / "account.json")


def test_the_user_history_covers_signed_key_orders() -> None:
    covered = _covered(USER_HISTORY)
    for what in ("user-signed-key-orders", "operator_keys", "update:register_key"):
        assert what in covered, what
    assert covered.count("update:revoke_key") == 3


def test_the_overdraft_histories_cover_opening_and_continuing() -> None:
    first, second = _covered(OPENED_HISTORY), _covered(CONTINUED_HISTORY)
    for what in ("ledger-start-checks", "operator_keys", "update:set_overdraft_limit"):
        assert what in first, what
    assert "ledger-start-checks" in second
    started = json.loads(CONTINUED_HISTORY.read_text())["events"][0]
    attributes = started["workflowExecutionStartedEventAttributes"]
    assert attributes["continuedExecutionRunId"]


async def _replay_fresh(env: Ledger, account: str) -> WorkflowHistory:
    history = await env.client.get_workflow_handle(account_workflow_id(account)).fetch_history()
    await _replayer(env.client).replay_workflow(history)
    return history


async def test_fresh_account_history_replays(ledger_env: Ledger) -> None:
    await _replay_fresh(ledger_env, await scenario(ledger_env))


async def test_fresh_signed_account_history_replays(ledger_env: Ledger) -> None:
    history = await _replay_fresh(ledger_env, await signed_scenario(ledger_env))
    if os.environ.get("JOBSHEET_RECORD_HISTORIES") == "signed":
        SIGNED_HISTORY.write_text(in_clear(history, ledger_env.client).to_json())


async def test_fresh_user_history_replays(ledger_env: Ledger) -> None:
    name = await user_scenario(ledger_env)
    history = await ledger_env.client.get_workflow_handle(user_workflow_id(name)).fetch_history()
    await _replayer(ledger_env.client).replay_workflow(history)
    _record(USER_HISTORY, history, ledger_env.client)


async def test_fresh_overdraft_histories_replay(ledger_env: Ledger) -> None:
    opened, continued = await overdraft_scenario(ledger_env)
    assert opened.run_id != continued.run_id
    for history in (opened, continued):
        await _replayer(ledger_env.client).replay_workflow(history)
    _record(OPENED_HISTORY, opened, ledger_env.client)
    _record(CONTINUED_HISTORY, continued, ledger_env.client)


def test_the_notes_histories_cover_notes_as_workflows() -> None:
    opened = _covered(NOTES_HISTORIES["account-notes-opened"])
    continued_run = _covered(NOTES_HISTORIES["account-notes-continued"])
    assert "account-notes-as-workflows" in opened
    assert "account-notes-as-workflows" in continued_run
    assert (opened + continued_run).count("update:cash_cheque") == 3
    receipted = _covered(NOTES_HISTORIES["credit-note-receipted"])
    assert "update:receipt" in receipted
    assert "update:refund" in _covered(NOTES_HISTORIES["credit-note-refunded"])
    for name in ("account-notes-opened", "account-notes-continued"):
        text = NOTES_HISTORIES[name].read_text()
        assert "hold_closed" in text or "start_credit_notes" in text, name
    continued = json.loads(NOTES_HISTORIES["account-notes-continued"].read_text())["events"][0]
    assert continued["workflowExecutionStartedEventAttributes"]["continuedExecutionRunId"]


async def test_fresh_notes_histories_replay(ledger_env: Ledger) -> None:
    histories = await notes_scenario(ledger_env)
    assert histories["account-notes-opened"].run_id != histories["account-notes-continued"].run_id
    for name, history in histories.items():
        await _replayer(ledger_env.client).replay_workflow(history)
        _record(NOTES_HISTORIES[name], history, ledger_env.client, series=("1", "notes"))


def _replayer(client: Client) -> Replayer:
    """Replays a fresh history, whose payloads the client's converter opens."""
    return Replayer(
        workflows=[AccountWorkflow, CreditNoteWorkflow, UserWorkflow],
        data_converter=client.data_converter,
    )


def _record(
    path: Path, history: WorkflowHistory, client: Client, *, series: tuple[str, ...] = ("1",)
) -> None:
    """Keep a fresh history for the Replayer test, its payloads opened (the session's keys do
    not outlive the session), when ``JOBSHEET_RECORD_HISTORIES`` names one of ``series``."""
    if os.environ.get("JOBSHEET_RECORD_HISTORIES") in series:
        path.write_text(in_clear(history, client).to_json())
