"""The contract book's deadline timer: one timer for the earliest held deadline, replaced only
when that deadline moves, that still expires a contract at its deadline; and a run begun before
the ``contract-book-timer-on-earliest`` patch keeps its old timers and replays.

The book is driven directly, as the compute activities drive it (a reservation is an
update-with-start), on a worker and a book of each test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from jobsheet.compute.models import (
    ComputeContract,
    ContractRecord,
    ContractState,
    ReleaseRequest,
    ReleaseResult,
)
from tests.compute.conftest import book_contract
from workflows.compute_service import (
    FORGET_ENDED_AFTER,
    TIMER_ON_EARLIEST_PATCH,
    ComputeServiceWorkflow,
    ContractBookInput,
    ReserveRequest,
    contract_book_id,
)

CAPACITY = 10
SERVICE = "test"


def spread_contracts(count: int) -> list[ComputeContract]:
    """``count`` contracts, the first with the earliest deadline (an hour away), each of the
    others a minute later than the one before."""
    first = datetime.now(UTC) + timedelta(hours=1)
    return [book_contract(n, first + timedelta(minutes=n)) for n in range(count)]


async def reserve(client: Client, task_queue: str, contract: ComputeContract) -> ContractRecord:
    """Reserve as the compute activities do: update-with-start, the book started if need be."""
    return await client.execute_update_with_start_workflow(
        ComputeServiceWorkflow.reserve,
        ReserveRequest(contract=contract, max_open_contracts=CAPACITY),
        start_workflow_operation=WithStartWorkflowOperation(
            ComputeServiceWorkflow.run,
            ContractBookInput(service=SERVICE, max_open_contracts=CAPACITY),
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


def timer_events(history: WorkflowHistory) -> Counter[str]:
    """How many timers the history started, cancelled and saw fire."""
    names = {
        EventType.EVENT_TYPE_TIMER_STARTED: "started",
        EventType.EVENT_TYPE_TIMER_CANCELED: "cancelled",
        EventType.EVENT_TYPE_TIMER_FIRED: "fired",
    }
    return Counter(names[e.event_type] for e in history.events if e.event_type in names)


def patches(history: WorkflowHistory) -> list[str]:
    """The ids of the patches the history's markers record."""
    return [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]


async def replays(client: Client, history: WorkflowHistory) -> None:
    """Today's workflow replays ``history`` (payloads opened by the client fixture's converter)."""
    replayer = Replayer(workflows=[ComputeServiceWorkflow], data_converter=client.data_converter)
    await replayer.replay_workflow(history)


@contextlib.asynccontextmanager
async def book_worker(
    client: Client, task_queue: str, workflow_class: type = ComputeServiceWorkflow
) -> AsyncIterator[Worker]:
    """A worker for the book alone; a nondeterministic replay fails the book at once instead of
    retrying its workflow task until the test times out."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[workflow_class],
        workflow_failure_exception_types=[NondeterminismError],
    ) as worker:
        yield worker


async def test_the_book_starts_a_new_timer_only_when_the_earliest_deadline_moves(
    client: Client,
) -> None:
    """Ten reservations, four releases of contracts that are not the earliest, and one release of
    the earliest start exactly two timers and cancel one.

    The book keeps one timer for the earliest held deadline. The first reservation arms it; the
    nine later deadlines, the refused eleventh reservation (its validator rejects it before it
    reaches history) and the four releases leave that deadline, so the timer, where it is.
    Releasing the earliest contract moves the earliest deadline to the second contract's: that
    timer is cancelled and one started for the new deadline. Before the patch the same scenario
    started 15 timers and cancelled 14 (see the upgrade test below).
    """
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = spread_contracts(CAPACITY)
    async with book_worker(client, task_queue):
        for contract in contracts:
            assert (await reserve(client, task_queue, contract)).state == ContractState.HELD
        one_too_many = book_contract(CAPACITY, contracts[-1].deadline)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await reserve(client, task_queue, one_too_many)
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == "ServiceAtCapacity"
        handle = book(client, task_queue)
        assert timer_events(await handle.fetch_history()) == Counter(started=1)

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


async def test_a_contract_is_expired_by_the_timer_at_its_deadline(client: Client) -> None:
    """A contract due in three seconds expires then with nobody acting, while a later one stays
    held: one timer for the first deadline fires and one is armed for the next."""
    task_queue = f"book-{uuid.uuid4().hex}"
    soon = book_contract(1, datetime.now(UTC) + timedelta(seconds=3))
    later = book_contract(2, datetime.now(UTC) + timedelta(hours=1))
    async with book_worker(client, task_queue):
        await reserve(client, task_queue, soon)
        await reserve(client, task_queue, later)
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


async def test_a_run_begun_before_the_patch_keeps_its_old_timers_and_replays(
    client: Client,
) -> None:
    """A book started on the code before the patch, then moved mid-run to today's worker, stays
    on the old path (no patch marker; every reservation and release re-arms the timer: 15
    started and 14 cancelled for the scenario) and its whole history replays."""
    task_queue = f"book-{uuid.uuid4().hex}"
    contracts = spread_contracts(CAPACITY)
    async with book_worker(client, task_queue, LegacyComputeServiceWorkflow):
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


# The contract book as deployed before the patch, word for word, registered under the same
# workflow type, to record the histories that today's code must replay on their old path.


@workflow.defn(name="ComputeServiceWorkflow", sandboxed=False)
class LegacyComputeServiceWorkflow:
    @workflow.init
    def __init__(self, book: ContractBookInput) -> None:
        self._service = book.service
        self._capacity = book.max_open_contracts
        self._records: dict[str, ContractRecord] = dict(book.records)
        self._changed = False

    @workflow.run
    async def run(self, book: ContractBookInput) -> None:
        while True:
            self._expire_due(workflow.now())
            timeout = self._until_next_deadline(workflow.now())
            try:
                await workflow.wait_condition(
                    lambda: self._changed or workflow.info().is_continue_as_new_suggested(),
                    timeout=timeout,
                )
            except TimeoutError:
                pass
            self._changed = False
            self._forget_ended(workflow.now())
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ContractBookInput(
                        service=self._service,
                        max_open_contracts=self._capacity,
                        records=self._records,
                    )
                )

    @workflow.update
    def reserve(self, request: ReserveRequest) -> ContractRecord:
        self._capacity = request.max_open_contracts
        existing = self._records.get(request.contract.contract_id)
        if existing is not None:
            return existing
        record = ContractRecord(contract=request.contract)
        self._records[request.contract.contract_id] = record
        self._changed = True
        return record

    @reserve.validator
    def _check_capacity(self, request: ReserveRequest) -> None:
        if request.contract.contract_id in self._records:
            return
        if self._held_count() >= request.max_open_contracts:
            raise ApplicationError(
                f"compute service {self._service!r} holds its maximum of "
                f"{request.max_open_contracts} open contracts",
                type="ServiceAtCapacity",
                non_retryable=True,
            )
        if request.contract.deadline <= workflow.now():
            raise ApplicationError(
                "the contract's deadline has already passed", type="DeadlinePassed"
            )

    @workflow.update
    def release(self, request: ReleaseRequest) -> ReleaseResult:
        record = self._records.get(request.contract_id)
        if record is None:
            return ReleaseResult(contract_id=request.contract_id, released_now=False, state=None)
        if record.state != ContractState.HELD:
            return ReleaseResult(
                contract_id=request.contract_id, released_now=False, state=record.state
            )
        self._end(record, ContractState.RELEASED, workflow.now())
        return ReleaseResult(
            contract_id=request.contract_id, released_now=True, state=ContractState.RELEASED
        )

    @workflow.query
    def contract(self, contract_id: str) -> ContractRecord | None:
        return self._records.get(contract_id)

    @workflow.query
    def held(self) -> list[ContractRecord]:
        return [r for r in self._records.values() if r.state == ContractState.HELD]

    def _held_count(self) -> int:
        return sum(1 for r in self._records.values() if r.state == ContractState.HELD)

    def _end(self, record: ContractRecord, state: ContractState, now: datetime) -> None:
        self._records[record.contract.contract_id] = ContractRecord(
            contract=record.contract, state=state, ended_at=now
        )
        self._changed = True

    def _expire_due(self, now: datetime) -> None:
        for record in list(self._records.values()):
            if record.state == ContractState.HELD and record.contract.deadline <= now:
                self._end(record, ContractState.EXPIRED, now)

    def _until_next_deadline(self, now: datetime) -> timedelta | None:
        deadlines = [
            r.contract.deadline for r in self._records.values() if r.state == ContractState.HELD
        ]
        if not deadlines:
            return None
        return max(min(deadlines) - now, timedelta(milliseconds=1))

    def _forget_ended(self, now: datetime) -> None:
        for contract_id, record in list(self._records.items()):
            if record.ended_at is not None and now - record.ended_at > FORGET_ENDED_AFTER:
                del self._records[contract_id]
