"""Temporal is private, in depth: a bare Temporal client cannot change anyone's keys.

Every request here goes straight to the user workflow through a raw client
(``handle.execute_update``), as a program that reaches the frontend without any user's key would
send it. Were it able to add its own key to the operator's registry, it could sign deposits.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from activities.ledger import LedgerActivities
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.identity import registry
from jobsheet.identity.key_orders import sign_add_key, sign_revoke_key
from jobsheet.identity.keys import Identity, PublicKeyRecord, generate_identity
from jobsheet.identity.models import RegisterKeyInput, RevokeKeyInput, user_workflow_id
from jobsheet.ledger import errors
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import BalanceView, account_workflow_id
from jobsheet.ledger.orders import sign_deposit
from tests.ledger.conftest import Ledger
from tests.ledger.legacy_user import LegacyUserWorkflow
from workflows.account import AccountWorkflow
from workflows.credit_note import CreditNoteWorkflow
from workflows.user import UserWorkflow

KEYS = list[PublicKeyRecord]


def user_handle(client: Client, name: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(user_workflow_id(name))


async def refused(
    type_: str, handle: WorkflowHandle[Any, Any], update: str, arg: Any, result_type: Any = KEYS
) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(update, arg, result_type=result_type)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert (cause.type, cause.non_retryable) == (type_, True), cause.message


def add(signer: Identity, key: Identity, **kwargs: Any) -> RegisterKeyInput:
    kwargs.setdefault("retire_others", False)
    return sign_add_key(
        signer, key.public_record(), idempotency_key=ledger.new_key("add"), **kwargs
    )


def revoke(signer: Identity, user: str, key_id: str, **kwargs: Any) -> RevokeKeyInput:
    return sign_revoke_key(
        signer, user=user, key_id=key_id, idempotency_key=ledger.new_key("revoke"), **kwargs
    )


async def test_no_key_enters_the_operators_registry_without_the_operators_key(
    ledger_env: Ledger,
) -> None:
    client, operator = ledger_env.client, ledger_env.operator
    mallory = await ledger_env.user("mallory")
    account = await ledger_env.account(mallory)
    handle = user_handle(client, operator.name)
    before = await registry.user_keys(client, operator.name)
    thief = generate_identity(operator.name)  # a key of Mallory's, named for the operator

    unsigned = RegisterKeyInput(idempotency_key=ledger.new_key(), key=thief.public_record())
    await refused(errors.UNSIGNED, handle, "register_key", unsigned)
    await refused(errors.BAD_SIGNATURE, handle, "register_key", add(thief, thief))
    await refused(errors.WRONG_USER, handle, "register_key", add(mallory, thief))
    posing = add(mallory, thief).model_copy(update={"user": operator.name})
    await refused(errors.BAD_SIGNATURE, handle, "register_key", posing)
    swapped = add(operator, generate_identity(operator.name)).model_copy(
        update={"key": thief.public_record()}
    )
    await refused(errors.BAD_SIGNATURE, handle, "register_key", swapped)
    stale = add(operator, thief, now=datetime.now(UTC) - timedelta(hours=1))
    await refused(errors.STALE_SIGNATURE, handle, "register_key", stale)
    assert await registry.user_keys(client, operator.name) == before

    # So Mallory's key still signs no deposit, whatever name it carries.
    forged = sign_deposit(thief, account=account, amount="1000.00", idempotency_key="d-1")
    account_handle = client.get_workflow_handle(account_workflow_id(account))
    await refused(errors.BAD_SIGNATURE, account_handle, "deposit", forged, BalanceView)
    assert (await ledger.balance(client, account)).balance == 0

    # The operator's own order adds a key, once per idempotency key.
    second = generate_identity(operator.name)
    order = add(operator, second)
    keys = await handle.execute_update("register_key", order, result_type=KEYS)
    assert [key.key_id for key in keys] == [operator.key_id, second.key_id]
    again = await handle.execute_update("register_key", order, id="again", result_type=KEYS)
    assert again == keys


async def test_keys_are_revoked_by_their_user_or_the_operator_only(ledger_env: Ledger) -> None:
    client, operator = ledger_env.client, ledger_env.operator
    alice, mallory = await ledger_env.user("alice"), await ledger_env.user("mallory")
    handle = user_handle(client, alice.name)

    unsigned = RevokeKeyInput(idempotency_key=ledger.new_key(), key_id=alice.key_id)
    await refused(errors.UNSIGNED, handle, "revoke_key", unsigned, PublicKeyRecord)
    theirs = revoke(mallory, alice.name, alice.key_id)
    await refused(errors.NOT_OPERATOR, handle, "revoke_key", theirs, PublicKeyRecord)
    posing = theirs.model_copy(update={"signed_by": operator.name})
    await refused(errors.BAD_SIGNATURE, handle, "revoke_key", posing, PublicKeyRecord)
    assert all(key.revoked_at is None for key in await registry.user_keys(client, alice.name))

    # Alice adds a second key and revokes it with itself; the same order again answers alike.
    second = generate_identity(alice.name)
    await handle.execute_update("register_key", add(alice, second), result_type=KEYS)
    own = revoke(second, alice.name, second.key_id)
    first = await handle.execute_update(
        "revoke_key", own, id=own.idempotency_key, result_type=PublicKeyRecord
    )
    assert first.revoked_at is not None
    resent = await handle.execute_update(
        "revoke_key", own, id="resent", result_type=PublicKeyRecord
    )
    assert resent == first
    # A revoked key signs no key order, even one dated before its revocation.
    backdated = add(
        second, generate_identity(alice.name), now=first.revoked_at - timedelta(seconds=1)
    )
    await refused(errors.BAD_SIGNATURE, handle, "register_key", backdated)

    # The operator revokes a stolen key (its keys checked by the workflow's local activity).
    stolen = revoke(operator, alice.name, alice.key_id)
    record = await handle.execute_update("revoke_key", stolen, result_type=PublicKeyRecord)
    assert record.key_id == alice.key_id and record.revoked_at is not None


async def test_a_user_running_before_the_patch_checks_key_orders_from_then_on(
    client: Client, settings: Settings, task_queue: str
) -> None:
    """A user whose run began on the old code: its old unsigned key changes replay as they
    were, and what arrives once today's code runs it must be signed."""
    operator = generate_identity(f"operator-{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(update={"operator_user": operator.name})
    activities = LedgerActivities(client, settings, internal_client(settings))

    def worker(user_workflow: type, **options: Any) -> Worker:
        return Worker(
            client,
            task_queue=task_queue,
            workflows=[user_workflow, AccountWorkflow, CreditNoteWorkflow],
            activities=activities.all(),
            **options,
        )

    alice = generate_identity(f"alice-{uuid.uuid4().hex[:8]}")
    handle = user_handle(client, alice.name)
    old_key = generate_identity(alice.name)
    # No cache (so no sticky queue): the next workflow task goes to whichever worker is up.
    async with worker(LegacyUserWorkflow, max_cached_workflows=0):
        await registry.register_user(client, operator, task_queue=task_queue)
        await registry.register_user(client, alice, task_queue=task_queue)
        old = RegisterKeyInput(
            idempotency_key="old-add", key=old_key.public_record(), retire_others=False
        )
        await handle.execute_update("register_key", old, result_type=KEYS)
        gone = RevokeKeyInput(idempotency_key="old-revoke", key_id=old_key.key_id)
        await handle.execute_update("revoke_key", gone, result_type=PublicKeyRecord)

    async with worker(UserWorkflow):
        # Signed-looking, with no key behind it: the validator cannot check the operator's
        # signature, so only the handler's check, on the patched path, stands in its way.
        fake = RevokeKeyInput(
            idempotency_key="fake-revoke",
            key_id=alice.key_id,
            user=alice.name,
            signed_by=operator.name,
            signer_key_id=operator.key_id,
            signed_at=datetime.now(UTC),
            signature=base64.b64encode(b"x" * 64).decode(),
        )
        await refused(errors.BAD_SIGNATURE, handle, "revoke_key", fake, PublicKeyRecord)
        unsigned = RegisterKeyInput(
            idempotency_key="new-add", key=generate_identity(alice.name).public_record()
        )
        await refused(errors.UNSIGNED, handle, "register_key", unsigned)
        keys = await registry.rotate_key(client, alice, generate_identity(alice.name))
        assert len(keys) == 3 and keys[0].valid_until is not None
        assert keys[1].revoked_at is not None

    history = await handle.fetch_history()
    replayer = Replayer(workflows=[UserWorkflow], data_converter=client.data_converter)
    await replayer.replay_workflow(history)
