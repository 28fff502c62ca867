"""An account that continued as new with a hold open gets it back at ``receipt_by``, with nobody
acting: the credit note's own workflow, started with a delay until then, refunds it and tells
the account. On the dev
server, with the real ledger activities.

tests/ledger/test_timer.py proves the same on the time-skipping server with stub activities;
this one runs in real time and keeps the histories of the account's runs (each run is a
history of its own, oldest first) and of the note for the Replayer test in
tests/ledger/test_replay.py: set ``JOBSHEET_RECORD_HISTORIES`` to a series name to record them
as ``histories/account-timer-refund-<series>-<n>.json`` and
``histories/credit-note-timer-refund-<series>.json``, beside the older series.
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import EntryKind, account_workflow_id, credit_note_workflow_id
from tests.histories import in_clear
from tests.ledger.conftest import Ledger
from tests.ledger.test_account_workflow import cash_input, new_cheque, state_of
from workflows.account import AccountWorkflow
from workflows.credit_note import CreditNoteWorkflow
from workflows.user import UserWorkflow

HISTORIES = Path(__file__).parent / "histories"
HISTORY_STEM = "account-timer-refund"
RECEIPT_WITHIN_SECONDS = 5


async def _runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The histories of every run of the workflow, oldest first, followed back from the latest
    through each run's ``continued_execution_run_id``."""
    latest = await client.get_workflow_handle(workflow_id).fetch_history()
    runs = [latest]
    while True:
        started = runs[0].events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return runs
        earlier = client.get_workflow_handle(workflow_id, run_id=started.continued_execution_run_id)
        runs.insert(0, await earlier.fetch_history())


async def _continued(handle: WorkflowHandle[Any, Any], run_id: str) -> str:
    """Wait until the workflow has continued as new from run ``run_id``; the new run's id."""
    while True:
        current = (await handle.describe()).run_id
        if current != run_id:
            return current
        await asyncio.sleep(0.1)


def _has(history: WorkflowHistory, event_type: int) -> bool:
    return any(event.event_type == event_type for event in history.events)


async def test_an_account_that_continued_as_new_while_holding_refunds_by_its_timer(
    ledger_env: Ledger,
) -> None:
    env = ledger_env
    alice, shop = await env.user("alice"), await env.user("shop")
    # Two operations a run: the opening deposit and the cashing end the first run.
    payer = await env.account(alice, funds="50.00", continue_as_new_after=2)
    payee = await env.account(shop)
    handle = env.client.get_workflow_handle(account_workflow_id(payer))
    first = (await handle.describe()).run_id
    cash = cash_input(new_cheque(alice, payer, payee), "10.00").model_copy(
        update={"receipt_within_seconds": RECEIPT_WITHIN_SECONDS}
    )
    note = await ledger.cash_cheque(env.client, cash)
    second = await asyncio.wait_for(_continued(handle, first), 10)
    # Two deposits end the second run: the third carries the hold that is still open.
    await env.deposit(payer, "1.00")
    await env.deposit(payer, "2.00")
    third = await asyncio.wait_for(_continued(handle, second), 10)
    view = await ledger.balance(env.client, payer)
    assert (view.balance, view.held, view.open_holds) == (Decimal("53.00"), note.held, 1)
    before = await handle.describe()
    assert before.run_id == third
    assert before.raw_description.workflow_execution_info.first_run_id == first != third

    async def refunded() -> None:
        while True:
            state = await state_of(env, payer)
            if not state.held and not state.unaudited and not state.transfers:
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(refunded(), RECEIPT_WITHIN_SECONDS + 15)
    view = await ledger.balance(env.client, payer)
    assert (view.balance, view.held, view.available) == (Decimal("53.00"), 0, Decimal("53.00"))
    assert view.open_holds == 0
    refunds = [
        entry
        for entry in (await ledger.statement(env.client, payer)).entries
        if entry.kind in (EntryKind.REFUND, EntryKind.AUTO_REFUND)
    ]
    assert [(entry.kind, entry.reference, entry.amount) for entry in refunds] == [
        (EntryKind.AUTO_REFUND, note.uid, note.held)
    ]
    assert refunds[0].at >= note.receipt_by

    # The refund is the note's timer, and the last run of the account applied it: no run began
    # since.
    runs = await _runs(env.client, account_workflow_id(payer))
    assert len(runs) == 3, [run.run_id for run in runs]
    assert [run.run_id for run in runs] == [first, second, third]
    assert (await handle.describe()).run_id == third
    assert _has(runs[-1], EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    note_history = await env.client.get_workflow_handle(
        credit_note_workflow_id(note.uid, payer)
    ).fetch_history()
    # The note's workflow was started with a delay until receipt_by: its first task refunds.
    started = note_history.events[0].workflow_execution_started_event_attributes
    assert started.first_workflow_task_backoff.ToTimedelta().total_seconds() > 0
    assert not _has(note_history, EventType.EVENT_TYPE_TIMER_FIRED)
    replayer = Replayer(
        workflows=[AccountWorkflow, CreditNoteWorkflow, UserWorkflow],
        data_converter=env.client.data_converter,
    )
    for run in [*runs, note_history]:
        await replayer.replay_workflow(run)
    series = os.environ.get("JOBSHEET_RECORD_HISTORIES")
    if series:
        for n, run in enumerate(runs):
            path = HISTORIES / f"{HISTORY_STEM}-{series}-{n}.json"
            path.write_text(in_clear(run, env.client).to_json())
        path = HISTORIES / f"credit-note-timer-refund-{series}.json"
        path.write_text(in_clear(note_history, env.client).to_json())
