"""A ledger worker on the dev server and helpers that open funded accounts for one test.

Each test has an operator of its own (``operator-<hex>``): the worker's settings trust it, so
its key signs the test's deposits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.ledger import LedgerActivities
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.identity import registry
from jobsheet.identity.keys import Identity, generate_identity
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import BalanceView
from workflows.account import AccountWorkflow
from workflows.credit_note import CreditNoteWorkflow
from workflows.user import UserWorkflow


@dataclass
class Ledger:
    """What a ledger test needs: a client, the worker's task queue, the settings and the
    operator the worker trusts to sign deposits."""

    client: Client
    task_queue: str
    settings: Settings
    operator: Identity

    async def user(self, prefix: str = "user") -> Identity:
        identity = generate_identity(f"{prefix}-{uuid.uuid4().hex[:10]}")
        await registry.register_user(self.client, identity, task_queue=self.task_queue)
        return identity

    async def account(
        self,
        owner: Identity,
        *,
        funds: Decimal | str | int = 0,
        overdraft_limit: Decimal | str | int = 0,
        continue_as_new_after: int = 1000,
    ) -> str:
        account = await ledger.open_account(
            self.client,
            owner=owner.name,
            task_queue=self.task_queue,
            overdraft_limit=overdraft_limit,
            operator=self.operator,
            continue_as_new_after=continue_as_new_after,
        )
        if Decimal(funds) > 0:
            await self.deposit(account, funds)
        return account

    async def deposit(
        self, account: str, amount: Decimal | str | int, *, idempotency_key: str | None = None
    ) -> BalanceView:
        """A deposit signed by this test's operator."""
        return await ledger.deposit(
            self.client, account, amount, operator=self.operator, idempotency_key=idempotency_key
        )


@pytest.fixture
async def ledger_env(client: Client, settings: Settings, task_queue: str) -> AsyncIterator[Ledger]:
    operator = generate_identity(f"operator-{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(update={"operator_user": operator.name})
    activities = LedgerActivities(client, settings, internal_client(settings))
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AccountWorkflow, CreditNoteWorkflow, UserWorkflow],
        activities=activities.all(),
        max_concurrent_workflow_tasks=8,
    ):
        await registry.register_user(client, operator, task_queue=task_queue)
        yield Ledger(client, task_queue, settings, operator)
