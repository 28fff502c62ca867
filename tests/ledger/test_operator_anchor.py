"""The operator's key is anchored in the ledger workers' configuration, not in Temporal.

Whoever reaches Temporal can terminate the operator's registry workflow and start it again with
a key of their own; with ``JOBSHEET_OPERATOR_PUBLIC_KEYS`` (or the stack's key file) the ledger
workers still trust only the real operator's key, so such an impostor cannot deposit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.ledger import LedgerActivities
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.identity import registry
from jobsheet.identity.calls import UserInput
from jobsheet.identity.keys import generate_identity, save_identity
from jobsheet.identity.models import user_workflow_id
from jobsheet.identity.trust import BadOperatorKey, trusted_operator_keys
from jobsheet.ledger import errors
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import BalanceView, account_workflow_id
from jobsheet.ledger.orders import sign_deposit
from tests.ledger.conftest import Ledger
from workflows.account import AccountWorkflow
from workflows.credit_note import CreditNoteWorkflow
from workflows.user import UserWorkflow


@pytest.fixture
async def anchored(client: Client, settings: Settings, task_queue: str) -> AsyncIterator[Ledger]:
    """A ledger worker whose configuration names the operator's public key."""
    operator = generate_identity(f"operator-{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(
        update={
            "operator_user": operator.name,
            "operator_public_keys": operator.public_record().public_key,
        }
    )
    # No key cache: the registry is asked every time, so only the anchor can make a difference.
    activities = LedgerActivities(client, settings, internal_client(settings), keys_ttl=0)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AccountWorkflow, CreditNoteWorkflow, UserWorkflow],
        activities=activities.all(),
    ):
        await registry.register_user(client, operator, task_queue=task_queue)
        yield Ledger(client, task_queue, settings, operator)


async def test_an_impostor_registry_cannot_deposit(anchored: Ledger) -> None:
    env = anchored
    alice = await env.user("alice")
    account = await env.account(alice, funds="10.00")

    # Mallory reaches Temporal: she replaces the operator's registry with her own key.
    mallory = generate_identity(env.operator.name)
    operators = env.client.get_workflow_handle(user_workflow_id(env.operator.name))
    await operators.terminate("taken over")
    await env.client.start_workflow(
        UserWorkflow.run,
        UserInput(name=mallory.name, key=mallory.public_record()),
        id=user_workflow_id(mallory.name),
        task_queue=env.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    assert [k.key_id for k in await registry.user_keys(env.client, mallory.name)] == [
        mallory.key_id
    ]

    handle = env.client.get_workflow_handle(account_workflow_id(account))
    forged = sign_deposit(mallory, account=account, amount="1000.00", idempotency_key="evil-1")
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update("deposit", forged, result_type=BalanceView)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == errors.BAD_SIGNATURE, cause.message
    assert (await ledger.balance(env.client, account)).balance == Decimal("10.00")

    # The real operator, whose key the workers' configuration names, still can.
    view = await env.deposit(account, "5.00")
    assert view.balance == Decimal("15.00")


def test_where_the_trusted_operator_keys_come_from(tmp_path: Path) -> None:
    state = tmp_path
    operator = generate_identity("operator")
    base = Settings(state_dir=state)
    assert trusted_operator_keys(base) is None
    save_identity(operator, config_dir=state)
    from_file = trusted_operator_keys(base)
    assert from_file is not None and [k.key_id for k in from_file] == [operator.key_id]
    other = generate_identity("operator")
    configured = base.model_copy(
        update={"operator_public_keys": f" {other.public_record().public_key} ,"}
    )
    from_env = trusted_operator_keys(configured)
    assert from_env is not None and [k.key_id for k in from_env] == [other.key_id]
    with pytest.raises(BadOperatorKey):
        trusted_operator_keys(base.model_copy(update={"operator_public_keys": "not-a-key"}))
