"""Benchmark: cheque cashings per second, against a bare update on an empty workflow.

Cashes pre-signed cheques through the account workflow's ``cash_cheque`` update (validator,
the owner's keys carried in the account, Ed25519 verification, hold, the credit note's workflow
started as a child, audit entry written to S3 in the background) against one account and spread
over ten, and measures a bare update on an empty workflow (one and ten workflows) in the same
run. A cashing counts as done once its note's workflow is started and its line written (the
accounts' background work). Starts its own Temporal dev server and S3 server on free 127.0.0.1
ports. The last line is ``RESULT cash_ratio_1=X cash_ratio_10=X``: cashings per second over bare
updates per second.

    .venv/bin/python -m bench.ledger [--count 600] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from temporalio.client import Client
    from temporalio.worker import Worker

    from activities.ledger import LedgerActivities
    from bench.servers import bench_servers
    from jobsheet.core.objectstore import internal_client
    from jobsheet.core.temporal import exit_without_teardown
    from jobsheet.identity import registry
    from jobsheet.identity.keys import Identity, generate_identity
    from jobsheet.ledger import operations as ledger
    from jobsheet.ledger.cheque import write_cheque
    from jobsheet.ledger.models import CashChequeInput, account_workflow_id
    from workflows.account import AccountWorkflow
    from workflows.credit_note import CreditNoteWorkflow
    from workflows.user import UserWorkflow


@workflow.defn
class EmptyWorkflow:
    """Nothing but a counter behind an update: the floor any update-based entity pays."""

    def __init__(self) -> None:
        self._count = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update
    def touch(self, key: str) -> int:
        self._count += 1
        return self._count


async def timed(
    count: int, per_lane: int, lanes: int, call: Callable[[int], Awaitable[object]]
) -> float:
    """Operations per second for ``count`` calls; call ``i`` goes to lane ``i % lanes`` and each
    lane (one workflow) has at most ``per_lane`` calls in flight."""
    limits = [asyncio.Semaphore(per_lane) for _ in range(lanes)]

    async def one(index: int) -> None:
        async with limits[index % lanes]:
            await call(index)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - began)


async def cashings_per_second(
    client: Client,
    task_queue: str,
    *,
    operator: Identity,
    accounts: int,
    count: int,
    concurrency: int,
) -> float:
    owner = generate_identity(f"bench-{uuid.uuid4().hex[:8]}")
    await registry.register_user(client, owner, task_queue=task_queue)
    payee = await ledger.open_account(client, owner=owner.name, task_queue=task_queue)
    payers = [
        await ledger.open_account(
            client, owner=owner.name, task_queue=task_queue, continue_as_new_after=100_000
        )
        for _ in range(accounts)
    ]
    for payer in payers:
        await ledger.deposit(client, payer, "1000000.00", operator=operator)
    requests = []
    for index in range(count):
        cheque = write_cheque(
            owner,
            account=payers[index % accounts],
            recipient=payee,
            resource="sha256:bench",
            max_spend="1.00",
        )
        requests.append(
            CashChequeInput(
                idempotency_key=f"cash-{cheque.uid}",
                cheque=cheque,
                spend=Decimal("1.00"),
                recipient=payee,
                resource="sha256:bench",
            )
        )
    began = time.perf_counter()
    await timed(count, concurrency, accounts, lambda i: ledger.cash_cheque(client, requests[i]))
    # A cashing is done when its note's workflow runs and its line is in the audit trail: wait
    # for the accounts' background work, so that it counts here and not in the next figure.
    for payer in payers:
        for _ in range(30_000):
            if await quiet(client, payer):
                break
            await asyncio.sleep(0.02)
    rate = count / (time.perf_counter() - began)
    held = sum([(await ledger.balance(client, payer)).held for payer in payers], Decimal(0))
    if held != count:
        raise RuntimeError(f"{count} cheques of 1.00 cashed but {held} held")
    return rate


async def quiet(client: Client, account: str) -> bool:
    """Whether the account has no note left to start and no line left to audit."""
    handle = client.get_workflow_handle(account_workflow_id(account))
    state = await handle.query(AccountWorkflow.state)
    return not state.notes_to_start and not state.unaudited


async def bare_updates_per_second(
    client: Client, task_queue: str, *, workflows: int, count: int, concurrency: int
) -> float:
    handles = [
        await client.start_workflow(
            EmptyWorkflow.run, id=f"empty-{uuid.uuid4()}", task_queue=task_queue
        )
        for _ in range(workflows)
    ]

    async def touch(index: int) -> int:
        key = f"touch-{index}"
        return await handles[index % workflows].execute_update(EmptyWorkflow.touch, key, id=key)

    return await timed(count, concurrency, workflows, touch)


async def main(count: int, concurrency: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    operator = generate_identity(f"operator-{uuid.uuid4().hex[:8]}")
    async with bench_servers(root, operator_user=operator.name, bucket="bench-ledger") as (
        env,
        settings,
    ):
        s3 = internal_client(settings)
        task_queue = f"bench-{uuid.uuid4().hex[:8]}"
        activities = LedgerActivities(env.client, settings, s3)
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[AccountWorkflow, CreditNoteWorkflow, UserWorkflow, EmptyWorkflow],
            activities=activities.all(),
        ):
            await registry.register_user(env.client, operator, task_queue=task_queue)
            # The server admits at most 10 in-flight updates per workflow: stay below it.
            c, per = count, concurrency
            client = env.client
            # Warm up the worker (sandbox, connections) before measuring.
            await bare_updates_per_second(
                client, task_queue, workflows=1, count=50, concurrency=per
            )
            cash = functools.partial(cashings_per_second, client, task_queue, operator=operator)
            await cash(accounts=1, count=50, concurrency=per)
            bare_one = await bare_updates_per_second(
                client, task_queue, workflows=1, count=c, concurrency=per
            )
            cash_one = await cash(accounts=1, count=c, concurrency=per)
            bare_ten = await bare_updates_per_second(
                client, task_queue, workflows=10, count=c, concurrency=per
            )
            cash_ten = await cash(accounts=10, count=c, concurrency=per)
    print(
        f"{count} operations per figure, {concurrency} in flight per workflow, "
        f"on {os.cpu_count()} cores"
    )
    print(f"{'':24}{'1 workflow':>14}{'10 workflows':>14}")
    print(f"{'bare update /s':24}{bare_one:14.1f}{bare_ten:14.1f}")
    print(f"{'cheque cashing /s':24}{cash_one:14.1f}{cash_ten:14.1f}")
    print(f"{'ratio cashing / bare':24}{cash_one / bare_one:14.2f}{cash_ten / bare_ten:14.2f}")
    print(f"RESULT cash_ratio_1={cash_one / bare_one:.2f} cash_ratio_10={cash_ten / bare_ten:.2f}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8, help="in flight per workflow (<= 10)")
    args = parser.parse_args(argv)
    code = 0
    try:
        asyncio.run(main(args.count, args.concurrency))
    except Exception as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        code = 1
    exit_without_teardown(code)


if __name__ == "__main__":
    # Run as ``bench.ledger``, not ``__main__``, so the sandbox can import EmptyWorkflow's module
    # and the bare update pays the same sandbox costs as the account workflow.
    from bench.ledger import cli as run_cli

    run_cli()
