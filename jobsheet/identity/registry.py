"""Calling the user registry from a Temporal client: register a user, read, add and revoke keys,
consume an authorisation's nonce.

Each user is one workflow, ``user-<name>`` (workflows/user.py). Used by the key cache, the job
activities (nonces), the public API, the local stack's bootstrap and tests. Refusals come back as the
non-retryable ``ApplicationError`` the workflow raised (``type`` from
``jobsheet.ledger.errors``); a user that does not exist is ``UnknownUser``.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from jobsheet.contracts.refusals import Refusal, refusal
from jobsheet.contracts.workflow_calls import ask_query, send_update
from jobsheet.identity.calls import (
    KEYS,
    REGISTER_KEY,
    REVOKE_KEY,
    USE_NONCE,
    USER_WORKFLOW,
    UserInput,
)
from jobsheet.identity.key_orders import sign_add_key, sign_revoke_key
from jobsheet.identity.keys import Identity, PublicKeyRecord
from jobsheet.identity.models import (
    RegisterKeyInput,
    RevokeKeyInput,
    UseNonceInput,
    user_workflow_id,
)
from jobsheet.ledger.errors import UNKNOWN_USER, USER_EXISTS


def _order_key(prefix: str) -> str:
    """A fresh idempotency key for a key order this module signs."""
    return f"{prefix}-{uuid.uuid4()}"


async def register_user(
    client: Client, identity: Identity, *, task_queue: str, continue_as_new_after: int = 500
) -> None:
    """Start ``user-<name>`` with the identity's public key; refused if the user exists."""
    await _start_user(
        client,
        UserInput(
            name=identity.name,
            key=identity.public_record(),
            continue_as_new_after=continue_as_new_after,
        ),
        task_queue=task_queue,
    )


async def register_public_key(
    client: Client, name: str, key: PublicKeyRecord, *, task_queue: str
) -> None:
    """Start ``user-<name>`` with ``key`` as its first key; refused if the user exists. (The
    public API's sign-up: it never holds the user's private key.)"""
    await _start_user(client, UserInput(name=name, key=key), task_queue=task_queue)


async def _start_user(client: Client, request: UserInput, *, task_queue: str) -> None:
    try:
        await client.start_workflow(
            USER_WORKFLOW,
            request,
            id=user_workflow_id(request.name),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"keys and used nonces of user {request.name}",
        )
    except WorkflowAlreadyStartedError:
        raise refusal(f"user {request.name} already exists", USER_EXISTS) from None


def user_handle(client: Client, name: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(user_workflow_id(name))


def _no_user(name: str) -> Refusal:
    return Refusal(UNKNOWN_USER, f"user {name} does not exist")


async def user_keys(client: Client, name: str) -> list[PublicKeyRecord]:
    return await ask_query(user_handle(client, name), KEYS, missing=_no_user(name))


async def rotate_key(client: Client, current: Identity, fresh: Identity) -> list[PublicKeyRecord]:
    """Register ``fresh``'s key and retire the user's older keys from now, on an order signed
    with ``current`` (a current key of the same user)."""
    order = sign_add_key(
        current, fresh.public_record(), idempotency_key=_order_key("rotate"), retire_others=True
    )
    return await add_key(client, order)


async def revoke_key(
    client: Client, signer: Identity, *, user: str, key_id: str
) -> PublicKeyRecord:
    """Stop ``user``'s key ``key_id`` signing anything new, on an order signed by ``signer``:
    a current key of ``user``, or the operator's."""
    order = sign_revoke_key(signer, user=user, key_id=key_id, idempotency_key=_order_key("revoke"))
    return await apply_revocation(client, order)


async def add_key(client: Client, order: RegisterKeyInput) -> list[PublicKeyRecord]:
    """Forward an order to add a key (a rotation with ``retire_others``) that a current key of
    ``order.user`` signed; the user's workflow verifies it. Once per idempotency key."""
    handle = user_handle(client, order.user)
    return await send_update(
        handle, REGISTER_KEY, order, id=order.idempotency_key, missing=_no_user(order.user)
    )


async def apply_revocation(client: Client, order: RevokeKeyInput) -> PublicKeyRecord:
    """Forward an order to revoke a key of ``order.user``, signed by that user or the operator;
    the user's workflow verifies it."""
    handle = user_handle(client, order.user)
    return await send_update(
        handle, REVOKE_KEY, order, id=order.idempotency_key, missing=_no_user(order.user)
    )


async def use_nonce(client: Client, name: str, request: UseNonceInput) -> None:
    """Consume an authorisation's nonce in the user's registry (once per idempotency key)."""
    await send_update(
        user_handle(client, name),
        USE_NONCE,
        request,
        id=f"nonce-{request.nonce}-{request.idempotency_key}",
        missing=_no_user(name),
    )
