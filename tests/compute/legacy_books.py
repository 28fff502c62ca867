"""The contract book as deployed before each change, word for word, under the same workflow type.

Tests run a book on one of these to put a run in flight as it was before a change, then move it
to today's worker (and record such histories), so that today's code is shown to replay it and to
carry on from it. Only the class names and the models' names differ from the deployed code.

- :class:`BookBeforeTimerPatch`: before ``contract-book-timer-on-earliest``;
- :class:`BookBeforeContractWorkflows`: at commit de96c60, before
  ``contract-book-contracts-as-workflows`` (every contract in the book's records).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NoReturn

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from jobsheet.compute.models import (
    ComputeContract,
    ContractRecord,
    ContractState,
    ReleaseRequest,
    ReleaseResult,
)

FORGET_ENDED_AFTER = timedelta(days=1)
TIMER_ON_EARLIEST_PATCH = "contract-book-timer-on-earliest"


class BookInput(BaseModel):
    service: str
    max_open_contracts: int = Field(ge=1)
    records: dict[str, ContractRecord] = Field(default_factory=dict)


class BookReserveRequest(BaseModel):
    contract: ComputeContract
    max_open_contracts: int = Field(ge=1)


@workflow.defn(name="ComputeServiceWorkflow", sandboxed=False)
class BookBeforeTimerPatch:
    """The book before the timer patch: every reservation and release re-arms the timer."""

    @workflow.init
    def __init__(self, book: BookInput) -> None:
        self._service = book.service
        self._capacity = book.max_open_contracts
        self._records: dict[str, ContractRecord] = dict(book.records)
        self._changed = False

    @workflow.run
    async def run(self, book: BookInput) -> None:
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
                    BookInput(
                        service=self._service,
                        max_open_contracts=self._capacity,
                        records=self._records,
                    )
                )

    @workflow.update
    def reserve(self, request: BookReserveRequest) -> ContractRecord:
        self._capacity = request.max_open_contracts
        existing = self._records.get(request.contract.contract_id)
        if existing is not None:
            return existing
        record = ContractRecord(contract=request.contract)
        self._records[request.contract.contract_id] = record
        self._changed = True
        return record

    @reserve.validator
    def _check_capacity(self, request: BookReserveRequest) -> None:
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


@workflow.defn(name="ComputeServiceWorkflow", sandboxed=False)
class BookBeforeContractWorkflows:
    """The book at commit de96c60: every contract in its records, one timer on the earliest."""

    @workflow.init
    def __init__(self, book: BookInput) -> None:
        self._service = book.service
        self._capacity = book.max_open_contracts
        self._records: dict[str, ContractRecord] = dict(book.records)
        self._changed = False
        self._timer_on_earliest = workflow.patched(TIMER_ON_EARLIEST_PATCH)
        self._armed_deadline: datetime | None = None
        self._earliest_moved = False

    @workflow.run
    async def run(self, book: BookInput) -> None:
        if self._timer_on_earliest:
            await self._expire_at_earliest_deadline()
        else:
            await self._rearm_on_every_change()

    async def _expire_at_earliest_deadline(self) -> NoReturn:
        """Expire contracts at their deadlines with one timer for the earliest held deadline,
        replaced only when that deadline moves: an earlier reservation, or the earliest contract
        released or expired."""
        while True:
            self._expire_due(workflow.now())
            self._forget_ended(workflow.now())
            self._armed_deadline = self._earliest_deadline()
            self._earliest_moved = False
            try:
                await workflow.wait_condition(
                    lambda: self._earliest_moved or workflow.info().is_continue_as_new_suggested(),
                    timeout=self._until_next_deadline(workflow.now()),
                    timeout_summary="expire the contract with the earliest deadline",
                )
            except TimeoutError:
                pass
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()

    async def _rearm_on_every_change(self) -> NoReturn:
        """The run loop of runs begun before the patch: every reservation and release wakes it,
        which cancels the timer and starts another (kept as it was, so that those runs replay)."""
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
                await self._continue_as_new()

    async def _continue_as_new(self) -> NoReturn:
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            BookInput(
                service=self._service,
                max_open_contracts=self._capacity,
                records=self._records,
            )
        )

    @workflow.update
    def reserve(self, request: BookReserveRequest) -> ContractRecord:
        """Hold a slot for the contract; a repeated reservation returns the first record."""
        self._capacity = request.max_open_contracts
        existing = self._records.get(request.contract.contract_id)
        if existing is not None:
            return existing
        record = ContractRecord(contract=request.contract)
        self._records[request.contract.contract_id] = record
        self._held_changed()
        return record

    @reserve.validator
    def _check_capacity(self, request: BookReserveRequest) -> None:
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
        """Free the slot; releasing an ended or unknown contract changes nothing."""
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
        self._held_changed()

    def _held_changed(self) -> None:
        """Wake the run loop for a change to the held contracts: on every change in a run begun
        before the patch, otherwise only when the earliest held deadline is not the armed one."""
        if not self._timer_on_earliest:
            self._changed = True
        elif self._earliest_deadline() != self._armed_deadline:
            self._earliest_moved = True

    def _expire_due(self, now: datetime) -> None:
        for record in list(self._records.values()):
            if record.state == ContractState.HELD and record.contract.deadline <= now:
                self._end(record, ContractState.EXPIRED, now)

    def _earliest_deadline(self) -> datetime | None:
        deadlines = [
            r.contract.deadline for r in self._records.values() if r.state == ContractState.HELD
        ]
        return min(deadlines, default=None)

    def _until_next_deadline(self, now: datetime) -> timedelta | None:
        earliest = self._earliest_deadline()
        if earliest is None:
            return None
        return max(earliest - now, timedelta(milliseconds=1))

    def _forget_ended(self, now: datetime) -> None:
        for contract_id, record in list(self._records.items()):
            if record.ended_at is not None and now - record.ended_at > FORGET_ENDED_AFTER:
                del self._records[contract_id]
