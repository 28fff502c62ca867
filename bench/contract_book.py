"""Benchmark: one compute service with 10,000 open contracts, against the book as it was before.

Reserves ``--contracts`` contracts on one service (capacity raised to that number) as the job's
step does, half to be released and half to expire at their deadlines; checks that one more is
refused at once and that the open count never passes the capacity; releases the first half,
waits for the second half to expire, and checks that every contract ended, released before its
deadline or expired, and that the book counts none open. It prints the rates, how late the
expiries were, and the largest continue-as-new input and history of the book's runs, with two
ratios against the book before contracts became workflows: what it would have carried for as
many open contracts (all their records), and its rate of reservations (timed on up to 1,000,
tests/compute/legacy_books.py). It starts its own Temporal dev server on a free 127.0.0.1 port.

    .venv/bin/python -m bench.contract_book [--contracts 10000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities import contract_book
from jobsheet.compute.book import ContractBookInput, contract_book_id, contract_workflow_id
from jobsheet.compute.models import ComputeContract, ContractRecord, ContractState
from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.core.temporal import exit_without_teardown
from tests.compute.conftest import book_contract
from tests.compute.legacy_books import BookBeforeContractWorkflows, BookInput, BookReserveRequest
from tests.servers import start_temporal_dev_server
from workflows.compute_contract import ComputeContractWorkflow
from workflows.compute_service import ComputeServiceWorkflow

SERVICE = "bench"
BASELINE_CONTRACTS = 1000
"""Reservations timed on the book before contracts became workflows (it breaks near 3,700)."""
KB = 1024


def contracts(task_queue: str, count: int, deadline: datetime) -> list[ComputeContract]:
    made = []
    for _ in range(count):
        job_uid = f"job-{uuid.uuid4().hex}"
        made.append(
            book_contract(0, deadline, SERVICE).model_copy(
                update={
                    "job_uid": job_uid,
                    "contract_id": f"{job_uid}@{SERVICE}",
                    "task_queue": task_queue,
                }
            )
        )
    return made


async def in_parallel(
    items: Iterable[ComputeContract],
    call: Callable[[ComputeContract], Awaitable[object]],
    concurrency: int,
) -> float:
    """Seconds to ``call`` every item, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: ComputeContract) -> None:
        async with gate:
            await call(item)

    started = time.perf_counter()
    await asyncio.gather(*(one(item) for item in items))
    return time.perf_counter() - started


async def reserve_before(client: Client, count: int, concurrency: int) -> float:
    """Reservations per second on the book as it was before contracts became workflows."""
    task_queue = f"bench-before-{uuid.uuid4().hex[:8]}"
    book = BookInput(service=SERVICE, max_open_contracts=count)

    async def reserve(contract: ComputeContract) -> object:
        return await client.execute_update_with_start_workflow(
            BookBeforeContractWorkflows.reserve,
            BookReserveRequest(contract=contract, max_open_contracts=count),
            start_workflow_operation=WithStartWorkflowOperation(
                BookBeforeContractWorkflows.run,
                book,
                id=contract_book_id(task_queue),
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            ),
        )

    async with Worker(client, task_queue=task_queue, workflows=[BookBeforeContractWorkflows]):
        seconds = await in_parallel(
            contracts(task_queue, count, datetime.now(UTC) + timedelta(hours=2)),
            reserve,
            concurrency,
        )
        await client.get_workflow_handle(contract_book_id(task_queue)).terminate("benchmark over")
    return count / seconds


async def timer_late(client: Client, contract: ComputeContract) -> float:
    """Seconds from the contract's deadline to its workflow's timer firing (server time)."""
    history = await client.get_workflow_handle(
        contract_workflow_id(contract.contract_id)
    ).fetch_history()
    fired = next(e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED)
    return (fired.event_time.ToDatetime(UTC) - contract.deadline).total_seconds()


async def book_runs(client: Client, book_id: str) -> list[tuple[int, int, int]]:
    """Every run of the book: (continue-as-new input bytes or 0, events, history bytes)."""
    runs = []
    async for execution in client.list_workflows(f'WorkflowId = "{book_id}"'):
        history = await client.get_workflow_handle(book_id, run_id=execution.run_id).fetch_history()
        last = history.events[-1]
        carried = 0
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            carried = last.workflow_execution_continued_as_new_event_attributes.input.ByteSize()
        runs.append((carried, len(history.events), sum(e.ByteSize() for e in history.events)))
    return runs


async def bench(count: int, concurrency: int) -> None:
    ring = PayloadKeyRing.generate()
    env = await start_temporal_dev_server(payload_keys=ring.serialise())
    client = env.client
    task_queue = f"bench-compute-{uuid.uuid4().hex[:8]}"
    book = client.get_workflow_handle(contract_book_id(task_queue))
    try:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[ComputeServiceWorkflow, ComputeContractWorkflow],
        ):
            peak = 0
            watching = True

            async def watch() -> None:
                nonlocal peak
                while watching:
                    try:
                        status = await book.query(ComputeServiceWorkflow.status)
                        peak = max(peak, status.open_contracts)
                    except Exception:
                        pass
                    await asyncio.sleep(0.5)

            watcher = asyncio.create_task(watch())

            async def reserve(contract: ComputeContract) -> object:
                return await contract_book.reserve(client, contract, max_open_contracts=count)

            half = count // 2
            released = contracts(task_queue, half, datetime.now(UTC) + timedelta(hours=2))
            reserve_a = await in_parallel(released, reserve, concurrency)
            # Deadlines for the second half: after all of it is reserved (timed by the first).
            margin = timedelta(seconds=reserve_a * 1.5 + 30)
            expiring = contracts(task_queue, count - half, datetime.now(UTC) + margin)
            reserve_b = await in_parallel(expiring, reserve, concurrency)
            status = await book.query(ComputeServiceWorkflow.status)
            assert status.open_contracts == count, status
            assert datetime.now(UTC) < expiring[0].deadline, "raise the margin: some expired"

            started = time.perf_counter()
            try:
                await reserve(contracts(task_queue, 1, datetime.now(UTC) + margin)[0])
                raise AssertionError("a full service took one more contract")
            except ApplicationError as refused:
                assert refused.type == "ServiceAtCapacity", refused
            refusal_ms = (time.perf_counter() - started) * 1000
            full_runs = await book_runs(client, book.id)

            async def release(contract: ComputeContract) -> object:
                return await contract_book.release(
                    client, contract.contract_id, task_queue=task_queue
                )

            releasing = await in_parallel(released, release, concurrency)
            last_deadline = max(c.deadline for c in expiring)
            await asyncio.sleep(max((last_deadline - datetime.now(UTC)).total_seconds(), 0))
            for _ in range(1200):
                status = await book.query(ComputeServiceWorkflow.status)
                if status.open_contracts == 0:
                    break
                await asyncio.sleep(0.5)
            drained = (datetime.now(UTC) - last_deadline).total_seconds()
            watching = False
            await watcher
            assert status.open_contracts == 0, status

            late: list[float] = []

            async def check(contract: ComputeContract, expect: ContractState) -> None:
                found = await contract_book.contract_record(
                    client, contract.contract_id, task_queue=task_queue
                )
                assert isinstance(found, ContractRecord) and found.state == expect, found
                assert found.ended_at is not None
                if expect == ContractState.EXPIRED:
                    late.append((found.ended_at - contract.deadline).total_seconds())
                else:
                    assert found.ended_at <= contract.deadline

            await in_parallel(released, lambda c: check(c, ContractState.RELEASED), concurrency)
            await in_parallel(expiring, lambda c: check(c, ContractState.EXPIRED), concurrency)
            fired = [await timer_late(client, c) for c in expiring[:: max(len(expiring) // 200, 1)]]
            all_runs = await book_runs(client, book.id)
            await book.terminate("benchmark over")
        baseline = await reserve_before(client, min(count, BASELINE_CONTRACTS), concurrency)
    finally:
        await env.shutdown()

    carried_before = len(
        ContractBookInput(
            service=SERVICE,
            max_open_contracts=count,
            records={c.contract_id: ContractRecord(contract=c) for c in released + expiring},
        ).model_dump_json()
    )
    largest = max(carried for carried, _, _ in all_runs)
    print(f"{count} open contracts on one service, {concurrency} callers at a time")
    reserving = count / (reserve_a + reserve_b)
    print(
        f"  reserve:  {reserving:8.1f} per second (the book before: {baseline:.1f} per second, "
        f"{baseline / reserving:.1f}x faster: it answered without starting a workflow)"
    )
    print(f"  release:  {half / releasing:8.1f} per second")
    print(f"  refusal of one more at capacity: {refusal_ms:.0f} ms; peak open seen: {peak}")
    print(
        f"  expired {len(late)}: their timers fired {statistics.median(fired):.2f} s after the "
        f"deadline (median of {len(fired)}), {max(fired):.2f} s (max); the expiry was handled "
        f"{statistics.median(late):.2f} s (median), {max(late):.2f} s (max) after it; the book "
        f"counted the last end {drained:.0f} s after the last deadline"
    )
    print(f"  released {half}, none after its deadline")
    print(f"  book runs: {len(full_runs)} while filling, {len(all_runs)} in all")
    print(
        f"  largest continue-as-new input: {largest / KB:.1f} KB "
        f"(at {count} open: {max(c for c, _, _ in full_runs) / KB:.1f} KB); "
        f"largest run: {max(e for _, e, _ in all_runs)} events, "
        f"{max(b for _, _, b in all_runs) / KB:.0f} KB"
    )
    print(
        f"  the book before contracts became workflows would carry {carried_before / KB:.0f} KB "
        f"(ratio {carried_before / largest:.0f}x; Temporal's limit is 2048 KB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    started = datetime.now(UTC)
    asyncio.run(bench(args.contracts, args.concurrency))
    print(f"finished in {(datetime.now(UTC) - started) / timedelta(seconds=1):.1f}s")
    exit_without_teardown(0)


if __name__ == "__main__":
    main()
