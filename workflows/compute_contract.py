"""One compute contract as a workflow of its own: held until released or its deadline.

The service's contract book (workflows/compute_service.py) starts it when it reserves the
contract, so that the book itself keeps only counts (docs/contract-book.md). It holds the
contract's record and its own deadline timer; ``release`` is an update that a second call
answers from the record. When the contract ends (released or expired) it signals the book
``contract_ended``, which frees the slot (a release answers once the signal is delivered), and
completes with the final record as its result.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from jobsheet.compute.book import CONTRACT_WORKFLOW
    from jobsheet.compute.models import (
        CONTRACT_ENDED_SIGNAL,
        ContractEnded,
        ContractRecord,
        ContractStart,
        ContractState,
        ReleaseRequest,
        ReleaseResult,
    )


@workflow.defn(name=CONTRACT_WORKFLOW)
class ComputeContractWorkflow:
    """Holds one contract: released by the job, or expired at its deadline by a timer."""

    @workflow.init
    def __init__(self, start: ContractStart) -> None:
        self._record = ContractRecord(contract=start.contract)
        self._book_id = start.book_id

    @workflow.run
    async def run(self, start: ContractStart) -> ContractRecord:
        deadline = start.contract.deadline
        if deadline > workflow.now():
            try:
                await workflow.wait_condition(
                    lambda: self._record.state != ContractState.HELD,
                    timeout=max(deadline - workflow.now(), timedelta(milliseconds=1)),
                    timeout_summary="expire the contract at its deadline",
                )
            except TimeoutError:
                pass
        if self._record.state == ContractState.HELD:
            await self._end(ContractState.EXPIRED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._record

    @workflow.update
    async def release(self, request: ReleaseRequest) -> ReleaseResult:
        """Free the slot, answering once the book is told; a second release says what the
        first did (``released_now`` False)."""
        if self._record.state != ContractState.HELD:
            return ReleaseResult(
                contract_id=request.contract_id, released_now=False, state=self._record.state
            )
        await self._end(ContractState.RELEASED)
        return ReleaseResult(
            contract_id=request.contract_id, released_now=True, state=ContractState.RELEASED
        )

    @release.validator
    def _check_contract(self, request: ReleaseRequest) -> None:
        held = self._record.contract.contract_id
        if request.contract_id != held:
            raise ApplicationError(
                f"this workflow holds contract {held}, not {request.contract_id}",
                type="WrongContract",
                non_retryable=True,
            )

    @workflow.query
    def record(self) -> ContractRecord:
        """The contract and its state (held, released or expired)."""
        return self._record

    async def _end(self, state: ContractState) -> None:
        """End the contract (at once: whoever comes second sees it ended), then tell the book."""
        self._record = ContractRecord(
            contract=self._record.contract, state=state, ended_at=workflow.now()
        )
        ended = ContractEnded(contract_id=self._record.contract.contract_id, state=state)
        try:
            await workflow.get_external_workflow_handle(self._book_id).signal(
                CONTRACT_ENDED_SIGNAL, ended
            )
        except FailureError as exc:
            # Only when the book no longer runs (terminated by hand): a new book starts empty.
            workflow.logger.warning("contract book %s not told of the end: %s", self._book_id, exc)
