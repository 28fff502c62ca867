"""The contract book of one compute service: an entity workflow that counts its open contracts.

One workflow per compute service (id :func:`contract_book_id`) on the service's task queue. Its
``reserve`` update refuses a contract beyond the service's capacity and otherwise starts the
contract's own workflow (workflows/compute_contract.py) as an abandoned child, which holds the
contract until it is released or its deadline passes and then signals ``contract_ended``. The
book keeps counts, not contracts, so its state and its continue-as-new input stay a few KB
whatever the number of open contracts (docs/contract-book.md).

A book run begun before :data:`CONTRACTS_AS_WORKFLOWS_PATCH` keeps every contract in its own
records, as it always did, until it continues as new; the run after it keeps expiring (and
releasing) those carried records while every new contract gets a workflow of its own.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import NoReturn

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from jobsheet.compute.book import (
        BOOK_WORKFLOW,
        ContractBookInput,
        ReserveRequest,
        contract_workflow_id,
    )
    from jobsheet.compute.contract_records import FORGET_ENDED_AFTER, ContractRecords
    from jobsheet.compute.models import (
        ALREADY_RESERVED,
        BOOK_ROLLING,
        CONTRACT_ENDED_SIGNAL,
        SERVICE_AT_CAPACITY,
        ComputeContract,
        ContractEnded,
        ContractRecord,
        ContractStart,
        ReleaseRequest,
        ReleaseResult,
        capacity_refusal,
    )
    from jobsheet.contracts.refusals import refusal

from workflows.compute_contract import ComputeContractWorkflow

__all__ = ["FORGET_ENDED_AFTER"]

TIMER_ON_EARLIEST_PATCH = "contract-book-timer-on-earliest"
"""From this patch on, the book starts a new deadline timer only when the earliest held deadline
moves; a run begun before it re-arms on every reservation and release until it continues as new."""
CONTRACTS_AS_WORKFLOWS_PATCH = "contract-book-contracts-as-workflows"
"""From this patch on, each new contract is a workflow of its own and the book keeps counts; a
run begun before it keeps its contracts in its records until it continues as new."""
ANSWER_AT_ONCE_PATCH = "contract-book-answers-at-once"
"""From this patch on, ``reserve`` answers in the workflow task that counts the contract and
sends its workflow's start, instead of a task later, once the start is confirmed: a
reservation no longer waits for another workflow's creation and a second task of the book, and
holds one of the book's ten in-flight updates for one task only. A contract the book started
in this run or the previous one is refused in the validator as reserved before (its workflow
answers for it); a start the server refuses after all frees its slot again."""


def _reserved_before(contract_id: str) -> ApplicationError:
    return ApplicationError(
        f"contract {contract_id} was reserved before; its workflow holds it",
        type=ALREADY_RESERVED,
        non_retryable=True,
    )


class BookStatus(BaseModel):
    """What the book counts now."""

    service: str
    max_open_contracts: int
    open_contracts: int
    """Every open contract: contract workflows not reported ended, and carried records held."""
    contract_workflows: int
    carried_held: int
    started_this_run: int
    ended_this_run: int


@workflow.defn(name=BOOK_WORKFLOW)
class ComputeServiceWorkflow:
    """Counts a compute service's open contracts; each contract is a workflow of its own."""

    @workflow.init
    def __init__(self, book: ContractBookInput) -> None:
        self._service = book.service
        self._capacity = book.max_open_contracts
        self._records = ContractRecords(book.records)
        self._as_workflows = workflow.patched(CONTRACTS_AS_WORKFLOWS_PATCH)
        self._timer_on_earliest = self._as_workflows or workflow.patched(TIMER_ON_EARLIEST_PATCH)
        self._open = book.open_contracts
        self._starts_per_run, self._ends_per_run = book.starts_per_run, book.ends_per_run
        self._ended_before = set(book.ended_recently)
        self._ended_now: dict[str, None] = {}
        self._started = 0
        self._started_before = set(book.started_recently)
        self._started_now: dict[str, None] = {}
        self._starts_pending: set[asyncio.Task[None]] = set()
        """Contract workflows whose start was sent and not yet confirmed or refused."""
        self._answer_at_once = self._as_workflows and workflow.patched(ANSWER_AT_ONCE_PATCH)
        self._changed = False
        self._armed_deadline: datetime | None = None
        self._earliest_moved = False

    @workflow.run
    async def run(self, book: ContractBookInput) -> None:
        if self._timer_on_earliest:
            await self._expire_at_earliest_deadline()
        else:
            await self._rearm_on_every_change()

    async def _expire_at_earliest_deadline(self) -> NoReturn:
        """Expire the records at their deadlines with one timer for the earliest held deadline,
        replaced only when that deadline moves: an earlier reservation, or the earliest record
        released or expired. Contract workflows keep their own timers."""
        while True:
            if self._records.expire_due(workflow.now()):
                self._held_changed()
            self._records.forget_ended(workflow.now())
            self._armed_deadline = self._records.earliest_deadline()
            self._earliest_moved = False
            try:
                await workflow.wait_condition(
                    lambda: self._earliest_moved or self._run_is_full(),
                    timeout=self._records.until_next_deadline(workflow.now()),
                    timeout_summary="expire the contract with the earliest deadline",
                )
            except TimeoutError:
                pass
            if self._run_is_full():
                await self._continue_as_new()

    async def _rearm_on_every_change(self) -> NoReturn:
        """The run loop of runs begun before the timer patch: every reservation and release
        wakes it, which cancels the timer and starts another (kept so that those runs replay)."""
        while True:
            if self._records.expire_due(workflow.now()):
                self._held_changed()
            timeout = self._records.until_next_deadline(workflow.now())
            try:
                await workflow.wait_condition(
                    lambda: self._changed or workflow.info().is_continue_as_new_suggested(),
                    timeout=timeout,
                )
            except TimeoutError:
                pass
            self._changed = False
            self._records.forget_ended(workflow.now())
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()

    def _run_is_full(self) -> bool:
        """Time to continue as new: Temporal suggests it, or this run started or counted the
        end of as many contracts as a run should."""
        if workflow.info().is_continue_as_new_suggested():
            return True
        if not self._as_workflows:
            return False
        return self._started >= self._starts_per_run or len(self._ended_now) >= self._ends_per_run

    async def _continue_as_new(self) -> NoReturn:
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and not self._starts_pending
        )
        workflow.continue_as_new(
            ContractBookInput(
                service=self._service,
                max_open_contracts=self._capacity,
                records=self._records.as_dict(),
                open_contracts=self._open,
                ended_recently=list(self._ended_now)[-self._ends_per_run :],
                started_recently=list(self._started_now)[-self._starts_per_run :],
                starts_per_run=self._starts_per_run,
                ends_per_run=self._ends_per_run,
            )
        )

    # --- reserve, release, ended ----------------------------------------------------------------

    @workflow.update
    async def reserve(self, request: ReserveRequest) -> ContractRecord:
        """Hold a slot for the contract: start its workflow. A contract this book started before
        is refused with :data:`ALREADY_RESERVED`; its workflow answers for it."""
        self._capacity = request.max_open_contracts
        existing = self._records.get(request.contract.contract_id)
        if existing is not None:
            return existing
        if not self._as_workflows:
            record = self._records.hold(request.contract)
            self._held_changed()
            return record
        if self._answer_at_once:
            return self._hold_and_start(request.contract)
        return await self._start_contract(request.contract)

    @reserve.validator
    def _check_capacity(self, request: ReserveRequest) -> None:
        if self._records.get(request.contract.contract_id) is not None:
            return
        if self._open_contracts() >= request.max_open_contracts:
            raise refusal(
                capacity_refusal(self._service, request.max_open_contracts), SERVICE_AT_CAPACITY
            )
        if request.contract.deadline <= workflow.now():
            raise ApplicationError(
                "the contract's deadline has already passed", type="DeadlinePassed"
            )
        if self._as_workflows and self._run_is_full():
            # Refused before it reaches history: the caller sends it again to the next run.
            raise ApplicationError(
                f"the contract book of {self._service!r} is continuing as new; send it again",
                type=BOOK_ROLLING,
            )
        contract_id = request.contract.contract_id
        if self._answer_at_once and (
            contract_id in self._started_now or contract_id in self._started_before
        ):
            raise _reserved_before(contract_id)

    def _hold_and_start(self, contract: ComputeContract) -> ContractRecord:
        """Count the contract and send its workflow's start; answer in this same task."""
        self._open += 1
        self._started += 1
        self._started_now[contract.contract_id] = None
        task = asyncio.create_task(self._confirm_start(contract))
        self._starts_pending.add(task)
        task.add_done_callback(self._starts_pending.discard)
        return ContractRecord(contract=contract)

    async def _confirm_start(self, contract: ComputeContract) -> None:
        """Await the start sent for ``contract``; one the server refuses frees its slot (a
        contract beyond the two runs the book remembers, reserved again)."""
        try:
            await self._start_child(contract)
        except Exception as exc:
            self._open -= 1
            workflow.logger.warning(
                "contract %s was not started (%s); its slot is free",
                contract.contract_id,
                type(exc).__name__,
            )

    async def _start_child(self, contract: ComputeContract) -> None:
        await workflow.start_child_workflow(
            ComputeContractWorkflow.run,
            ContractStart(contract=contract, book_id=workflow.info().workflow_id),
            id=contract_workflow_id(contract.contract_id),
            # A contract that ended is not held again by a retried reservation.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            # It outlives this run: the book continues as new long before it ends.
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"contract {contract.contract_id}: held until {contract.deadline}",
        )

    async def _start_contract(self, contract: ComputeContract) -> ContractRecord:
        # Counted before the first await, so that the next validator sees the slot taken.
        self._open += 1
        self._started += 1
        try:
            await self._start_child(contract)
        except WorkflowAlreadyStartedError:
            self._open -= 1
            raise _reserved_before(contract.contract_id) from None
        except Exception:
            self._open -= 1
            raise
        return ContractRecord(contract=contract)

    @workflow.update
    def release(self, request: ReleaseRequest) -> ReleaseResult:
        """Free the slot of a contract the book holds in its records (a contract workflow is
        released by its own update); releasing an ended or unknown contract changes nothing."""
        result = self._records.release(request.contract_id, workflow.now())
        if result.released_now:
            self._held_changed()
        return result

    @workflow.signal(name=CONTRACT_ENDED_SIGNAL)
    def contract_ended(self, ended: ContractEnded) -> None:
        """A contract workflow ended: its slot is free. The same end twice counts once (within
        this run, and for the last ``ends_per_run`` ends of the previous run)."""
        contract_id = ended.contract_id
        if not self._as_workflows or contract_id in self._ended_before:
            return
        if contract_id in self._ended_now:
            return
        self._ended_now[contract_id] = None
        self._open = max(self._open - 1, 0)

    # --- queries ------------------------------------------------------------------------------

    @workflow.query
    def contract(self, contract_id: str) -> ContractRecord | None:
        """A contract the book holds in its records (None for contract workflows)."""
        return self._records.get(contract_id)

    @workflow.query
    def started(self, contract_id: str) -> bool:
        """Whether this run or the previous one started the contract's workflow (its start
        may still be on its way: ask the contract's workflow again in a moment)."""
        return contract_id in self._started_now or contract_id in self._started_before

    @workflow.query
    def held(self) -> list[ContractRecord]:
        """The held contracts of the book's records."""
        return self._records.held()

    @workflow.query
    def status(self) -> BookStatus:
        return BookStatus(
            service=self._service,
            max_open_contracts=self._capacity,
            open_contracts=self._open_contracts(),
            contract_workflows=self._open,
            carried_held=self._records.held_count(),
            started_this_run=self._started,
            ended_this_run=len(self._ended_now),
        )

    def _open_contracts(self) -> int:
        return self._open + self._records.held_count()

    def _held_changed(self) -> None:
        """Wake the run loop for a change to the held records: on every change in a run begun
        before the timer patch, otherwise only when the earliest held deadline is not the armed
        one."""
        if not self._timer_on_earliest:
            self._changed = True
        elif self._records.earliest_deadline() != self._armed_deadline:
            self._earliest_moved = True
