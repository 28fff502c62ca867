"""A contract nobody releases expires by its own workflow's timer at its deadline and frees its
slot in the book, on the time-skipping server (updates are unreliable there, so the book and
the contract's workflow are started directly, as a reservation leaves them)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from jobsheet.compute.book import ContractBookInput, contract_book_id, contract_workflow_id
from jobsheet.compute.models import ContractStart, ContractState
from tests.compute.books import book_worker, record, replays, timer_events
from tests.compute.conftest import book_contract
from workflows.compute_contract import ComputeContractWorkflow
from workflows.compute_service import ComputeServiceWorkflow


async def test_an_unreleased_contract_expires_at_its_deadline(
    time_env: WorkflowEnvironment,
) -> None:
    client = time_env.client
    task_queue = f"book-{uuid.uuid4().hex}"
    # The time-skipping server's clock runs ahead of the wall clock once other tests skipped.
    deadline = await time_env.get_current_time() + timedelta(hours=2)
    contract = book_contract(1, deadline).model_copy(
        update={"contract_id": f"job-{uuid.uuid4().hex}@test", "task_queue": task_queue}
    )
    async with book_worker(client, task_queue):
        book = await client.start_workflow(
            ComputeServiceWorkflow.run,
            ContractBookInput(service="test", max_open_contracts=5, open_contracts=1),
            id=contract_book_id(task_queue),
            task_queue=task_queue,
        )
        held = await client.start_workflow(
            ComputeContractWorkflow.run,
            ContractStart(contract=contract, book_id=book.id),
            id=contract_workflow_id(contract.contract_id),
            task_queue=task_queue,
        )
        assert (await held.query(ComputeContractWorkflow.record)).state == ContractState.HELD
        # Not by awaiting a result, which lets the server skip on, to the book's run timeout.
        await time_env.sleep(timedelta(hours=3))
        ended = await held.query(ComputeContractWorkflow.record)
        assert (await held.describe()).status == WorkflowExecutionStatus.COMPLETED
        now = await book.query(ComputeServiceWorkflow.status)
        history = await held.fetch_history()
        await book.terminate("test over")
    assert ended.state == ContractState.EXPIRED
    assert ended.ended_at is not None and ended.ended_at >= deadline
    assert now.open_contracts == 0 and now.ended_this_run == 1
    assert timer_events(history) == {"started": 1, "fired": 1}
    await replays(client, history)
    await record(client, history, "contract-expired")
