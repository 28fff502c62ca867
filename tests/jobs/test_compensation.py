"""A cancellation that meets a ledger step the payer's account cannot answer yet.

The payer's account runs on a ledger worker of its own, which the tests stop and start, so the
job waits on that account (cashing its cheque, or receipting its cost) for as long as the test
likes. The user registry and the provider's account stay on the deployment's ledger worker:
submission checks the user's keys (``prepare_job``) before it cashes the cheque, and the
receipt's transfer is delivered to the provider.

A workflow cancel reaches a job's workflow only when its current workflow task ends; while a
local activity waits, that is the task's heartbeat (some eight seconds), so each test waits
until the workflow has taken the cancel request before the account answers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities import contract_book
from jobsheet.compute.models import ContractState
from jobsheet.core.settings import Settings
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.messages import cancel_resource
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.jobs.operations import cancel_job, job_handle, trigger_run
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import EntryKind, LedgerEntry
from tests.histories import in_clear
from tests.jobs.conftest import Deployment, deployment
from tests.jobs.workers import LedgerWorker
from workflows.job_sheet import JobSheetWorkflow

TERMINAL = [state for state in JobState if state.terminal]
CANCEL_REQUESTED = "cancel requested"


class PayerLedger(LedgerWorker):
    """A ledger worker of the test's own, for the payer's account only: stoppable, so that the
    account cannot answer while the rest of the ledger does."""

    def __init__(
        self, client: Client, settings: Settings, executor: concurrent.futures.Executor
    ) -> None:
        queue = f"payer-ledger-{uuid.uuid4().hex[:10]}"
        super().__init__(client, settings.model_copy(update={"task_queue_ledger": queue}), executor)

    @property
    def task_queue(self) -> str:
        return self.settings.task_queue_ledger


@contextlib.asynccontextmanager
async def payer_apart(
    client: Client, settings: Settings
) -> AsyncIterator[tuple[Deployment, PayerLedger]]:
    """A whole deployment whose payer's account (funded as the deployment's would be) runs on
    a :class:`PayerLedger`."""
    async with deployment(client, settings) as env:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
            payer_ledger = PayerLedger(client, env.settings, executor)
            payer_ledger.start()
            try:
                env.payer = await ledger.open_account(
                    client, owner=env.user.name, task_queue=payer_ledger.task_queue
                )
                await ledger.deposit(client, env.payer, env.initial_funds, operator=env.operator)
                yield env, payer_ledger
            finally:
                await payer_ledger.stop()


async def _job_entries(env: Deployment, uid: str) -> list[LedgerEntry]:
    statement = await ledger.statement(env.client, env.payer)
    return [entry for entry in statement.entries if entry.job_uid == uid]


async def _contract_state(env: Deployment, sheet: JobSheet) -> ContractState | None:
    assert sheet.contract is not None
    record = await contract_book.contract_record(
        env.client, sheet.contract.contract_id, task_queue=sheet.contract.task_queue
    )
    return record.state if record else None


async def _started(env: Deployment) -> str:
    """The uid of the job being submitted, once its workflow exists."""
    while True:
        if env.submitted:
            uid = env.submitted[-1]
            with contextlib.suppress(RPCError):
                await job_handle(env.client, uid).describe()
                return uid
        await asyncio.sleep(0.1)


async def _in_state(handle: WorkflowHandle[JobSheetWorkflow, JobSheet], state: JobState) -> None:
    while True:
        if (await handle.query(JobSheetWorkflow.get_sheet)).state == state:
            return
        await asyncio.sleep(0.2)


async def _history_types(handle: WorkflowHandle[JobSheetWorkflow, JobSheet]) -> list[int]:
    return [event.event_type for event in (await handle.fetch_history()).events]


async def _steps_around_the_cancel(
    env: Deployment, handle: WorkflowHandle[JobSheetWorkflow, JobSheet]
) -> list[str]:
    """The job's local activities (by type) and its cancel request, in history order."""
    history = in_clear(await handle.fetch_history(), env.client)
    order = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            order.append(CANCEL_REQUESTED)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes.details["data"].payloads[0]
            order.append(json.loads(marker.data)["activity_type"])
    return order


async def _cancel_taken(handle: WorkflowHandle[JobSheetWorkflow, JobSheet]) -> None:
    """Wait until the workflow has taken the cancel request: a workflow task started after it
    (its first activation carries the cancellation, before any later local activity result)."""
    requested = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    while True:
        types = await _history_types(handle)
        if requested in types:
            if EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED in types[types.index(requested) :]:
                await asyncio.sleep(0.5)  # the worker runs that activation
                return
        await asyncio.sleep(0.2)


async def test_a_cancel_while_the_cheque_is_being_cashed_refunds_the_hold_at_once(
    client: Client, job_settings: Settings
) -> None:
    async with payer_apart(client, job_settings) as (env, payer_ledger):
        before = await env.balances()
        before_total = await env.total()
        await payer_ledger.stop()
        submission = asyncio.create_task(env.submit(env.request(b"never uploaded\n")))
        uid = await asyncio.wait_for(_started(env), 15)
        handle = job_handle(env.client, uid)
        await asyncio.sleep(1)
        assert not submission.done()  # the cheque cannot be cashed: the account is stopped

        await handle.cancel()
        await asyncio.wait_for(_cancel_taken(handle), 20)
        assert not submission.done()
        payer_ledger.start()

        # The submission fails: the job was cancelled before it was paid for and got its PARs.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await asyncio.wait_for(submission, 20)
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "JobRejected", cause

        sheet = await env.wait_for(uid, *TERMINAL, within=20)
        assert sheet.state == JobState.CANCELLED, sheet.error
        assert [entry.state for entry in sheet.timeline if entry.state.terminal] == [
            JobState.CANCELLED
        ]
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        # The workflow took the cancel while the cheque was being cashed, and refunded after.
        steps = await _steps_around_the_cancel(env, handle)
        assert steps.index(CANCEL_REQUESTED) < steps.index("cash_cheque"), steps
        assert steps.index("cash_cheque") < steps.index("refund_credit_note"), steps

        # The hold was placed once the account answered, and refunded by the job at once, not
        # by the account's automatic refund hours later.
        (note,) = sheet.credit_notes
        assert note.receipt_by - datetime.now(UTC) > timedelta(hours=1)
        assert sheet.costs.held == note.held > 0
        assert sheet.costs.charged == 0 and sheet.costs.refunded == sheet.costs.held
        kinds = [entry.kind for entry in await _job_entries(env, uid)]
        assert kinds == [EntryKind.HOLD, EntryKind.REFUND], kinds
        assert await env.balances() == before
        assert await env.total() == before_total
        assert await _contract_state(env, sheet) == ContractState.RELEASED
        assert sheet.contract is not None and sheet.contract.released
        assert all(par.closed_at is not None for par in sheet.pars)


async def test_a_cancel_during_settlement_settles_once(
    client: Client, job_settings: Settings
) -> None:
    async with payer_apart(client, job_settings) as (env, payer_ledger):
        before = await env.balances()
        before_total = await env.total()
        data = b"settle me once\n" * 40
        submitted = await env.submit(env.request(data))
        async with httpx.AsyncClient() as http:
            assert (await http.put(submitted.upload_url, content=data)).status_code == 200
        await payer_ledger.stop()
        await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
        handle = job_handle(env.client, submitted.uid)
        # The run ends; its receipt waits on the stopped account.
        await asyncio.wait_for(_in_state(handle, JobState.SETTLING), 30)

        # The owner's cancel is refused by its validator (which needs no ledger); a Temporal
        # cancel is accepted and taken by the workflow. Both are sent at once: each reaches the
        # workflow only with its next workflow task.
        async def owner_cancel() -> None:
            await cancel_job(
                env.client,
                submitted.uid,
                sign_authorisation(env.user, cancel_resource(submitted.uid)),
            )

        async def temporal_cancel() -> JobState:
            await handle.cancel()
            await _cancel_taken(handle)
            return (await handle.query(JobSheetWorkflow.get_sheet)).state

        refusal, seen = await asyncio.wait_for(
            asyncio.gather(owner_cancel(), temporal_cancel(), return_exceptions=True), 30
        )
        assert isinstance(refusal, WorkflowUpdateFailedError), refusal
        cause = refusal.cause
        assert isinstance(cause, ApplicationError) and cause.type == "WrongState", cause
        assert seen == JobState.SETTLING, seen  # the cancel changed nothing
        payer_ledger.start()

        sheet = await env.wait_for(submitted.uid, *TERMINAL, within=20)
        assert sheet.state == JobState.SUCCEEDED, sheet.error
        states = [entry.state for entry in sheet.timeline]
        assert states.count(JobState.SETTLING) == 1
        assert [state for state in states if state.terminal] == [JobState.SUCCEEDED]
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

        costs = sheet.costs
        assert costs.charged > 0 and costs.charged + costs.refunded == costs.held
        kinds = [entry.kind for entry in await _job_entries(env, submitted.uid)]
        assert kinds.count(EntryKind.RECEIPT) == 1, kinds
        assert EntryKind.REFUND not in kinds and EntryKind.AUTO_REFUND not in kinds, kinds
        assert await env.total() == before_total
        after = await env.balances()
        assert after == (before[0] - costs.charged, 0, before[2] + costs.charged)
