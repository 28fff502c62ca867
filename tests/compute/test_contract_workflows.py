"""Each contract a workflow of its own, the book keeping counts: reserve, release, idempotence
across the book's continue-as-new, a duplicated end ignored, capacity, and carried records.

The book is reached as the job's steps and the run activity reach it (activities/contract_book.py)
on the local dev server, with a worker and a book of each test's own; contract ids are unique
per test, since a contract's workflow id is its contract id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities import contract_book
from jobsheet.compute.book import ContractBookInput, contract_book_id, contract_workflow_id
from jobsheet.compute.models import (
    CONTRACT_ENDED_SIGNAL,
    ComputeContract,
    ContractEnded,
    ContractRecord,
    ContractState,
    ReleaseResult,
)
from tests.compute.books import book_worker, count, patches, record, replays
from tests.compute.conftest import book_contract
from workflows.compute_service import (
    ANSWER_AT_ONCE_PATCH,
    CONTRACTS_AS_WORKFLOWS_PATCH,
    BookStatus,
    ComputeServiceWorkflow,
)

SERVICE = "test"


def draft(task_queue: str, *, deadline: datetime | None = None) -> ComputeContract:
    """A contract of its own (fresh job uid) for the book on ``task_queue``."""
    contract = book_contract(0, deadline or datetime.now(UTC) + timedelta(hours=1), SERVICE)
    job_uid = f"job-{uuid.uuid4().hex}"
    return contract.model_copy(
        update={"job_uid": job_uid, "contract_id": f"{job_uid}@{SERVICE}", "task_queue": task_queue}
    )


def book(client: Client, task_queue: str) -> WorkflowHandle[ComputeServiceWorkflow, None]:
    return client.get_workflow_handle_for(ComputeServiceWorkflow.run, contract_book_id(task_queue))


async def start_book(client: Client, task_queue: str, **options: Any) -> str:
    """Start the book as a reservation would, with ``options`` (thresholds, carried records);
    returns its first run id."""
    handle = await client.start_workflow(
        ComputeServiceWorkflow.run,
        ContractBookInput(service=SERVICE, **{"max_open_contracts": 3, **options}),
        id=contract_book_id(task_queue),
        task_queue=task_queue,
    )
    assert handle.first_execution_run_id is not None
    return handle.first_execution_run_id


async def status(client: Client, task_queue: str) -> BookStatus:
    return await book(client, task_queue).query(ComputeServiceWorkflow.status)


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 20) -> None:
    """Poll ``check`` until it holds (a signal or a timer acts a moment after the call)."""
    for _ in range(int(within / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def open_contracts(client: Client, task_queue: str, expected: int) -> None:
    async def check() -> bool:
        return (await status(client, task_queue)).open_contracts == expected

    await until(check, f"{expected} open contracts")


async def reserve(client: Client, contract: ComputeContract, capacity: int = 3) -> ContractRecord:
    return await contract_book.reserve(client, contract, max_open_contracts=capacity)


async def release(client: Client, contract: ComputeContract) -> ReleaseResult:
    return await contract_book.release(client, contract.contract_id, task_queue=contract.task_queue)


async def test_a_contract_is_a_workflow_held_until_released_once(client: Client) -> None:
    """The book starts the contract's workflow and counts it; release ends it once, frees the
    slot (the workflow tells the book) and a later release says what happened."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contract = draft(task_queue)
    async with book_worker(client, task_queue):
        held = await reserve(client, contract)
        assert held == ContractRecord(contract=contract)
        assert (await status(client, task_queue)).open_contracts == 1
        looked_up = await contract_book.contract_record(
            client, contract.contract_id, task_queue=task_queue
        )
        assert looked_up == held

        first = await release(client, contract)
        assert first.released_now and first.state == ContractState.RELEASED
        assert (await status(client, task_queue)).open_contracts == 0  # told before answering
        handle = client.get_workflow_handle(
            contract_workflow_id(contract.contract_id), result_type=ContractRecord
        )
        ended = await handle.result()
        assert ended.state == ContractState.RELEASED and ended.ended_at is not None
        again = await release(client, contract)  # the workflow has completed
        assert again == ReleaseResult(
            contract_id=contract.contract_id, released_now=False, state=ContractState.RELEASED
        )
        unknown = await contract_book.release(client, "nobody@test", task_queue=task_queue)
        assert unknown == ReleaseResult(contract_id="nobody@test", released_now=False, state=None)

        # A contract that ended is not held again by a late reservation: it answers its record.
        late = await reserve(client, contract.model_copy(update={"run_token": "n" * 43}))
        assert late.state == ContractState.RELEASED and late.contract == contract
        assert (await status(client, task_queue)).open_contracts == 0
        history = await handle.fetch_history()
        book_history = await book(client, task_queue).fetch_history()
        await book(client, task_queue).terminate("test over")
    assert patches(book_history) == [CONTRACTS_AS_WORKFLOWS_PATCH, ANSWER_AT_ONCE_PATCH]
    await replays(client, history)
    await replays(client, book_history)
    await record(client, history, "contract-released")
    await record(client, book_history, "book-reserve-release-reserve-again")


async def test_a_reservation_is_idempotent_across_continue_as_new(client: Client) -> None:
    """The book continues as new after two starts; the same contract reserved again (a new
    draft, as a retried step makes) in the next run gets the first record, and is counted once."""
    task_queue = f"book-{uuid.uuid4().hex}"
    first, second, third = draft(task_queue), draft(task_queue), draft(task_queue)
    async with book_worker(client, task_queue):
        first_run = await start_book(client, task_queue, starts_per_run=2)
        await reserve(client, first)
        await reserve(client, second)

        async def continued() -> bool:
            return (await book(client, task_queue).describe()).run_id != first_run

        await until(continued, "the book continued as new")
        redrafted = first.model_copy(update={"run_token": "r" * 43})
        again = await reserve(client, redrafted)
        assert again == ContractRecord(contract=first)  # the first run token, not the new one
        now = await status(client, task_queue)
        # Refused in the validator (the previous run started it): nothing started or counted.
        assert now.open_contracts == 2 and now.started_this_run == 0
        await reserve(client, third)
        assert (await status(client, task_queue)).open_contracts == 3
        handle = client.get_workflow_handle(contract_book_id(task_queue), run_id=first_run)
        history = await handle.fetch_history()
        await book(client, task_queue).terminate("test over")
    assert count(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW) == 1
    assert count(history, EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) == 2
    await replays(client, history)
    await record(client, history, "book-continued-as-new")


async def test_a_duplicated_contract_ended_is_ignored(client: Client) -> None:
    """An end counted in this run or the one before is not counted again, so a duplicated
    ``contract_ended`` frees no slot; the book continues as new after two ends here."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = [draft(task_queue) for _ in range(3)]
    async with book_worker(client, task_queue):
        first_run = await start_book(client, task_queue, ends_per_run=2)
        for contract in contracts:
            await reserve(client, contract)
        handle = book(client, task_queue)

        async def duplicate(contract: ComputeContract) -> None:
            ended = ContractEnded(contract_id=contract.contract_id, state=ContractState.RELEASED)
            await handle.signal(CONTRACT_ENDED_SIGNAL, ended)

        await release(client, contracts[0])
        assert (await status(client, task_queue)).open_contracts == 2
        await duplicate(contracts[0])  # in the same run
        await release(client, contracts[1])  # the second end: the book continues as new

        async def continued() -> bool:
            return (await handle.describe()).run_id != first_run

        await until(continued, "the book continued as new")
        assert (await status(client, task_queue)).open_contracts == 1
        await duplicate(contracts[0])  # both counted by the previous run
        await duplicate(contracts[1])
        assert (await status(client, task_queue)).open_contracts == 1
        history = await client.get_workflow_handle(
            contract_book_id(task_queue), run_id=first_run
        ).fetch_history()
        await handle.terminate("test over")
    assert count(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 3
    await replays(client, history)
    await record(client, history, "book-duplicate-end-ignored")


async def test_a_full_service_refuses_at_once_and_is_never_exceeded(client: Client) -> None:
    """Eight reservations at once for three slots: three are held, five refused naming the
    service and its capacity; a retried reservation of a held contract still gets its record;
    a release makes room for one more."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = [draft(task_queue) for _ in range(8)]
    async with book_worker(client, task_queue):
        await start_book(client, task_queue)
        outcomes = await asyncio.gather(
            *(reserve(client, c) for c in contracts), return_exceptions=True
        )
        held = [
            c for c, o in zip(contracts, outcomes, strict=True) if isinstance(o, ContractRecord)
        ]
        refusals = [o for o in outcomes if isinstance(o, ApplicationError)]
        assert len(held) == 3 and len(refusals) == 5, outcomes
        for refusal in refusals:
            assert refusal.type == "ServiceAtCapacity" and refusal.non_retryable
            assert "compute service 'test' is full" in refusal.message
            assert "its maximum of 3 open contracts" in refusal.message
        assert (await status(client, task_queue)).open_contracts == 3
        assert (await reserve(client, held[0])).contract == held[0]

        await release(client, held[0])  # answers once the book has freed the slot
        latecomer = next(c for c in contracts if c not in held)
        assert (await reserve(client, latecomer)).state == ContractState.HELD
        assert (await status(client, task_queue)).open_contracts == 3
        await book(client, task_queue).terminate("test over")


async def test_records_carried_from_an_old_run_are_released_and_expired(client: Client) -> None:
    """A run after one begun before contracts became workflows carries that run's records: they
    count against capacity, are read and released through the book, and expire by its timer,
    while a new contract becomes a workflow."""
    task_queue = f"book-{uuid.uuid4().hex}"
    soon = draft(task_queue, deadline=datetime.now(UTC) + timedelta(seconds=3))
    later = draft(task_queue)
    carried = {c.contract_id: ContractRecord(contract=c) for c in (soon, later)}
    async with book_worker(client, task_queue):
        await start_book(client, task_queue, records=carried)
        new = draft(task_queue)
        assert (await reserve(client, new)).state == ContractState.HELD
        now = await status(client, task_queue)
        assert (now.open_contracts, now.carried_held, now.contract_workflows) == (3, 2, 1)
        with pytest.raises(ApplicationError) as refused:
            await reserve(client, draft(task_queue))
        assert refused.value.type == "ServiceAtCapacity"
        assert await contract_book.contract_record(
            client, later.contract_id, task_queue=task_queue
        ) == ContractRecord(contract=later)
        assert (await reserve(client, later)).contract == later  # reserved again: same record
        released = await release(client, later)
        assert released.released_now and released.state == ContractState.RELEASED

        async def expired() -> bool:
            found = await contract_book.contract_record(
                client, soon.contract_id, task_queue=task_queue
            )
            return found is not None and found.state == ContractState.EXPIRED

        await until(expired, "the carried contract expired")
        await open_contracts(client, task_queue, 1)
        history = await book(client, task_queue).fetch_history()
        await book(client, task_queue).terminate("test over")
    await replays(client, history)
    await record(client, history, "book-carrying-records")


async def test_the_book_stays_small_while_contracts_pile_up(client: Client) -> None:
    """80 open contracts on a book that continues as new every 20 starts and 10 ends: every
    continue-as-new input stays under 2 KB whatever the number of open contracts, each run's
    history stays short, and releasing them all brings the count back to zero."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = [draft(task_queue) for _ in range(80)]
    async with book_worker(client, task_queue):
        first_run = await start_book(
            client, task_queue, max_open_contracts=200, starts_per_run=20, ends_per_run=10
        )
        for batch in range(0, len(contracts), 10):
            await asyncio.gather(*(reserve(client, c, 200) for c in contracts[batch : batch + 10]))
        assert (await status(client, task_queue)).open_contracts == 80
        for batch in range(0, len(contracts), 10):
            await asyncio.gather(*(release(client, c) for c in contracts[batch : batch + 10]))
        assert (await status(client, task_queue)).open_contracts == 0
        runs = await book_runs(client, task_queue, first_run)
        await book(client, task_queue).terminate("test over")
    inputs = [size for size, _ in runs if size is not None]
    assert len(inputs) >= 80 // 20
    assert max(inputs) < 2048, inputs
    assert max(events for _, events in runs) < 1000


async def book_runs(
    client: Client, task_queue: str, first_run: str
) -> list[tuple[int | None, int]]:
    """For each run of the book, first to last: the size of the input it continued as new
    with (None for the current run), and its number of events."""
    handle = client.get_workflow_handle(contract_book_id(task_queue), run_id=first_run)
    history = await handle.fetch_history()
    runs: list[tuple[int | None, int]] = []
    while True:
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            runs.append((None, len(history.events)))
            return runs
        attributes = last.workflow_execution_continued_as_new_event_attributes
        runs.append((attributes.input.ByteSize(), len(history.events)))
        history = await client.get_workflow_handle(
            handle.id, run_id=attributes.new_execution_run_id
        ).fetch_history()


async def test_a_reservation_is_answered_in_the_task_that_counts_it(client: Client) -> None:
    """The book answers ``reserve`` in the workflow task that counts the contract and sends its
    workflow's start (not a task later, once the start is confirmed); a release sent at once
    after the answer still finds and ends the contract, and frees its slot."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = [draft(task_queue) for _ in range(5)]
    async with book_worker(client, task_queue):
        await start_book(client, task_queue, max_open_contracts=5)
        for contract in contracts:
            assert (await reserve(client, contract, 5)).state == ContractState.HELD
            released = await release(client, contract)
            assert released.released_now and released.state == ContractState.RELEASED
        await open_contracts(client, task_queue, 0)
        history = await book(client, task_queue).fetch_history()
        await book(client, task_queue).terminate("test over")
    order = [
        e.event_type
        for e in history.events
        if e.event_type
        in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
            EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
            EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED,
        )
    ]
    # Each reservation: the start sent and the answer given together, the start confirmed later.
    first = order[:3]
    assert first.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED) < first.index(
        EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
    ), order
    assert count(history, EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED) == 5
    await replays(client, history)
    await record(client, history, "book-answers-at-once")


async def test_a_start_the_server_refuses_frees_its_slot(client: Client) -> None:
    """A contract the book does not remember (reserved beyond its last two runs) but whose
    workflow exists: the book answers, its start is refused, and the slot is free again."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contract = draft(task_queue)
    async with book_worker(client, task_queue):
        await start_book(client, task_queue, max_open_contracts=1)
        await reserve(client, contract, 1)
        contract_workflow = client.get_workflow_handle(contract_workflow_id(contract.contract_id))

        async def started() -> bool:
            try:
                await contract_workflow.describe()
            except RPCError:
                return False
            return True

        # A start still on its way when its book is terminated is dropped: wait for it.
        await until(started, "the contract's workflow started")
        # A book started afresh remembers nothing, like a run two continue-as-news later.
        handle = book(client, task_queue)
        await handle.terminate("forget what this run started")
        await start_book(client, task_queue, max_open_contracts=1)
        assert (await reserve(client, contract, 1)).contract == contract
        await open_contracts(client, task_queue, 0)  # the refused start gave the slot back
        other = draft(task_queue)
        assert (await reserve(client, other, 1)).state == ContractState.HELD
        await handle.terminate("test over")
