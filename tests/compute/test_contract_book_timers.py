"""The contract book's deadline timer over its own records: one timer for the earliest held
deadline, replaced only when that deadline moves, that still expires a contract at its deadline;
and runs begun before each patch keep their old path on today's worker and replay.

Since ``contract-book-contracts-as-workflows`` a new book keeps no contract in its records (each
is a workflow of its own), so these runs are begun on the book as deployed before that patch
(tests/compute/legacy_books.py) and moved mid-run to today's worker. The book is driven directly,
as the compute activities drive it (a reservation is an update-with-start), on a worker and a
book of each test's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from jobsheet.compute.book import contract_book_id
from jobsheet.compute.models import (
    ComputeContract,
    ContractRecord,
    ContractState,
    ReleaseRequest,
    ReleaseResult,
)
from tests.compute.books import book_worker, patches, record, replays, timer_events
from tests.compute.conftest import book_contract
from tests.compute.legacy_books import (
    BookBeforeContractWorkflows,
    BookBeforeTimerPatch,
    BookInput,
    BookReserveRequest,
)
from workflows.compute_service import TIMER_ON_EARLIEST_PATCH, ComputeServiceWorkflow

CAPACITY = 10
SERVICE = "test"
BEFORE_CONTRACT_WORKFLOWS = (BookBeforeContractWorkflows,)
BEFORE_TIMER_PATCH = (BookBeforeTimerPatch,)


def spread_contracts(count: int) -> list[ComputeContract]:
    """``count`` contracts, the first with the earliest deadline (an hour away), each of the
    others a minute later than the one before."""
    first = datetime.now(UTC) + timedelta(hours=1)
    return [book_contract(n, first + timedelta(minutes=n)) for n in range(count)]


async def reserve(client: Client, task_queue: str, contract: ComputeContract) -> ContractRecord:
    """Reserve as the compute activities did: update-with-start, the book started if need be
    (with the input and request of the code before contracts became workflows)."""
    return await client.execute_update_with_start_workflow(
        BookBeforeContractWorkflows.reserve,
        BookReserveRequest(contract=contract, max_open_contracts=CAPACITY),
        start_workflow_operation=WithStartWorkflowOperation(
            BookBeforeContractWorkflows.run,
            BookInput(service=SERVICE, max_open_contracts=CAPACITY),
            id=contract_book_id(task_queue),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        ),
    )


def book(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(contract_book_id(task_queue))


async def release(client: Client, task_queue: str, contract: ComputeContract) -> ReleaseResult:
    return await book(client, task_queue).execute_update(
        ComputeServiceWorkflow.release, ReleaseRequest(contract_id=contract.contract_id)
    )


async def the_scenario(
    client: Client, task_queue: str, contracts: list[ComputeContract]
) -> ContractRecord:
    """Release four contracts that are not the earliest, then the earliest; the remaining
    earliest held contract (``contracts[1]``) is returned."""
    for contract in (contracts[3], contracts[5], contracts[7], contracts[9]):
        assert (await release(client, task_queue, contract)).released_now
    assert (await release(client, task_queue, contracts[0])).released_now
    record = await book(client, task_queue).query(ComputeServiceWorkflow.contract, "job-1@test")
    assert record is not None and record.state == ContractState.HELD
    return record


async def test_the_book_starts_a_new_timer_only_when_the_earliest_deadline_moves(
    client: Client,
) -> None:
    """Ten reservations, four releases of contracts that are not the earliest, and one release of
    the earliest start exactly two timers and cancel one, in a run begun before contracts became
    workflows and moved to today's worker after the reservations.

    The book keeps one timer for the earliest held deadline. The first reservation arms it; the
    nine later deadlines, the refused eleventh reservation (its validator rejects it before it
    reaches history) and the four releases leave that deadline, so the timer, where it is.
    Releasing the earliest contract moves the earliest deadline to the second contract's: that
    timer is cancelled and one started for the new deadline. Before the patch the same scenario
    started 15 timers and cancelled 14 (see the upgrade test below).
    """
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = spread_contracts(CAPACITY)
    async with book_worker(client, task_queue, BEFORE_CONTRACT_WORKFLOWS):
        for contract in contracts:
            assert (await reserve(client, task_queue, contract)).state == ContractState.HELD
        one_too_many = book_contract(CAPACITY, contracts[-1].deadline)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await reserve(client, task_queue, one_too_many)
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == "ServiceAtCapacity"
        handle = book(client, task_queue)
        assert timer_events(await handle.fetch_history()) == Counter(started=1)
    async with book_worker(client, task_queue):
        second = await the_scenario(client, task_queue, contracts)
        history = await handle.fetch_history()
        held = await handle.query(ComputeServiceWorkflow.held)
        await handle.terminate("test over")
    assert timer_events(history) == Counter(started=2, cancelled=1)
    assert [r.contract.contract_id for r in held] == [f"job-{n}@test" for n in (1, 2, 4, 6, 8)]
    started = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    fires_at = (
        started[-1].event_time.ToDatetime(UTC)
        + started[-1].timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
    )
    assert abs(fires_at - second.contract.deadline) < timedelta(seconds=1)
    assert patches(history) == [TIMER_ON_EARLIEST_PATCH]
    await replays(client, history)
    await record(client, history, "book-records-timer-on-earliest-moved-to-today")


async def test_a_contract_is_expired_by_the_timer_at_its_deadline(client: Client) -> None:
    """A contract due in three seconds expires then with nobody acting, while a later one stays
    held: one timer for the first deadline fires and one is armed for the next. The contracts
    were reserved before the upgrade; the timer fires on today's worker."""
    task_queue = f"book-{uuid.uuid4().hex}"
    soon = book_contract(1, datetime.now(UTC) + timedelta(seconds=3))
    later = book_contract(2, datetime.now(UTC) + timedelta(hours=1))
    async with book_worker(client, task_queue, BEFORE_CONTRACT_WORKFLOWS):
        await reserve(client, task_queue, soon)
        await reserve(client, task_queue, later)
    async with book_worker(client, task_queue):
        handle = book(client, task_queue)
        for _ in range(150):  # up to 30 s; it fails only if the contract never expires
            if len(await handle.query(ComputeServiceWorkflow.held)) == 1:
                break
            await asyncio.sleep(0.2)
        expired = await handle.query(ComputeServiceWorkflow.contract, soon.contract_id)
        held = await handle.query(ComputeServiceWorkflow.held)
        history = await handle.fetch_history()
        await handle.terminate("test over")
    assert expired is not None and expired.state == ContractState.EXPIRED
    assert expired.ended_at is not None and expired.ended_at >= soon.deadline
    assert [r.contract.contract_id for r in held] == [later.contract_id]
    assert timer_events(history) == Counter(started=2, fired=1)
    await replays(client, history)
    await record(client, history, "book-records-expiry-moved-to-today")


async def test_a_run_begun_before_the_patch_keeps_its_old_timers_and_replays(
    client: Client,
) -> None:
    """A book started on the code before the patch, then moved mid-run to today's worker, stays
    on the old path (no patch marker; every reservation and release re-arms the timer: 15
    started and 14 cancelled for the scenario) and its whole history replays."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = spread_contracts(CAPACITY)
    async with book_worker(client, task_queue, BEFORE_TIMER_PATCH):
        for contract in contracts[:5]:
            await reserve(client, task_queue, contract)
    async with book_worker(client, task_queue):
        for contract in contracts[5:]:
            await reserve(client, task_queue, contract)
        await the_scenario(client, task_queue, contracts)
        handle = book(client, task_queue)
        history = await handle.fetch_history()
        await handle.terminate("test over")
    assert timer_events(history) == Counter(started=15, cancelled=14)
    assert patches(history) == []
    await replays(client, history)
    await record(client, history, "book-records-before-timer-patch-moved-to-today")
