"""Contracting: quote, deadline, run token, capacity, release, and expiry at the deadline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import contract_book
from jobsheet.compute.book import ContractBookInput, contract_book_id
from jobsheet.compute.models import (
    ContractRecord,
    ContractState,
    ReleaseResult,
)
from tests.compute.conftest import ComputeHarness, book_contract
from tests.compute.test_outcomes import assert_non_retryable
from workflows.compute_service import ComputeServiceWorkflow


async def test_contract_quotes_the_maximum_and_holds_a_slot(compute: ComputeHarness) -> None:
    contract = await compute.contract("echo", service="test")
    assert contract.service == "test"
    assert contract.task_queue == compute.settings.compute_task_queue("test")
    assert contract.fee == Decimal("0.05") and contract.price_per_second == Decimal("0.01")
    assert contract.quote == Decimal("0.05") + Decimal("0.01") * 30
    assert contract.max_runtime_seconds == 30
    assert contract.deadline > contract.run_by + timedelta(seconds=30)
    assert len(contract.run_token) >= 43  # 32 random bytes, URL-safe base64
    record = await contract_book.contract_record(
        compute.client, contract.contract_id, task_queue=contract.task_queue
    )
    assert record == ContractRecord(contract=contract)
    book = compute.client.get_workflow_handle(contract_book_id(contract.task_queue))
    assert (await book.query(ComputeServiceWorkflow.status)).open_contracts == 1


async def test_contracting_again_for_the_same_job_returns_the_same_contract(
    compute: ComputeHarness,
) -> None:
    """A retried submission drafts again (a new run token): the book keeps the first one."""
    job_uid = f"job-{uuid.uuid4().hex[:8]}"
    first = await compute.reserve(compute.draft("echo", service="test", job_uid=job_uid))
    second = await compute.reserve(compute.draft("echo", service="test", job_uid=job_uid))
    assert first == second


async def test_release_twice_is_harmless_and_a_released_contract_cannot_run(
    compute: ComputeHarness,
) -> None:
    contract = await compute.contract("echo", service="test")
    first = await compute.release(contract.contract_id, service="test")
    second = await compute.release(contract.contract_id, service="test")
    assert first.released_now and first.state == ContractState.RELEASED
    assert not second.released_now and second.state == ContractState.RELEASED
    with pytest.raises(WorkflowFailureError) as failure:
        await compute.run(compute.run_request(contract))
    assert_non_retryable(failure.value, "ContractNotHeld")


async def test_releasing_on_a_service_that_never_contracted_is_harmless(
    compute: ComputeHarness,
) -> None:
    result = await compute.release("nobody@other", service="other")
    assert result == ReleaseResult(contract_id="nobody@other", released_now=False, state=None)


async def test_capacity_is_bounded_and_release_frees_a_slot(compute: ComputeHarness) -> None:
    held = [await compute.contract("echo", service="test") for _ in range(3)]
    with pytest.raises(ApplicationError) as refused:
        await compute.contract("echo", service="test")
    assert refused.value.type == "ServiceAtCapacity" and refused.value.non_retryable
    await compute.release(held[0].contract_id, service="test")
    assert (await compute.contract("echo", service="test")).service == "test"


async def test_a_forged_contract_cannot_run(compute: ComputeHarness) -> None:
    contract = await compute.contract("echo", service="test")
    forged = contract.model_copy(update={"run_token": "x" * 43})
    with pytest.raises(WorkflowFailureError) as failure:
        await compute.run(compute.run_request(forged))
    assert_non_retryable(failure.value, "ContractNotHeld")


async def test_a_carried_record_expires_at_its_deadline(time_env: WorkflowEnvironment) -> None:
    """A record carried from a run begun before contracts became workflows expires by the
    book's own timer."""
    task_queue = f"book-{uuid.uuid4().hex}"
    # The time-skipping server's clock runs ahead of the wall clock once other tests skipped.
    record = ContractRecord(
        contract=book_contract(1, await time_env.get_current_time() + timedelta(hours=2))
    )
    async with Worker(time_env.client, task_queue=task_queue, workflows=[ComputeServiceWorkflow]):
        handle = await time_env.client.start_workflow(
            ComputeServiceWorkflow.run,
            ContractBookInput(service="test", max_open_contracts=5, records={"job-1@test": record}),
            id=contract_book_id(task_queue),
            task_queue=task_queue,
        )
        state = await handle.query(ComputeServiceWorkflow.contract, "job-1@test")
        assert state is not None and state.state == ContractState.HELD
        await time_env.sleep(timedelta(hours=3))
        state = await handle.query(ComputeServiceWorkflow.contract, "job-1@test")
        assert state is not None and state.state == ContractState.EXPIRED
        assert await handle.query(ComputeServiceWorkflow.held) == []
        await handle.terminate()


def test_a_held_contract_past_its_deadline_reads_as_expired() -> None:
    """Before its timer is handled (a burst of deadlines can keep the worker busy), a held
    contract past its deadline is expired to whoever reads it: the run step refuses it."""
    deadline = datetime.now(UTC)
    record = ContractRecord(contract=book_contract(1, deadline))
    assert record.state_at(deadline - timedelta(seconds=1)) == ContractState.HELD
    assert record.state_at(deadline) == ContractState.EXPIRED
    released = record.model_copy(update={"state": ContractState.RELEASED})
    assert released.state_at(deadline) == ContractState.RELEASED
