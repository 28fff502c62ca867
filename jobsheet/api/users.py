"""``/v1/users``: open sign-up, and each user's keys (read; add, rotate or revoke on signed orders)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from fastapi import APIRouter, Header, Request, Response

from jobsheet.api.auth import Caller, SignedCaller
from jobsheet.api.context import context
from jobsheet.api.errors import ApiRefusal, not_found
from jobsheet.api.rate_limit import retry_after_header
from jobsheet.api.workflow_answers import workflow_call
from jobsheet.contracts.api import AddKeyRequest, RevokeKeyRequest, SignupRequest, UserView
from jobsheet.core.names import Name
from jobsheet.identity import registry
from jobsheet.identity.keys import PublicKeyRecord, key_id_for
from jobsheet.ledger.errors import USER_EXISTS

public = APIRouter(tags=["users"])
router = APIRouter(tags=["users"])

IdempotencyKey = Header(
    alias="Idempotency-Key",
    min_length=8,
    max_length=200,
    description="Repeat the request with the same key to get the first answer again.",
)


def _record(public_key: str, now: datetime) -> PublicKeyRecord:
    return PublicKeyRecord(
        key_id=key_id_for(base64.b64decode(public_key)), public_key=public_key, valid_from=now
    )


@public.post("/v1/users", status_code=201, response_model=UserView)
async def sign_up(body: SignupRequest, request: Request, response: Response) -> UserView:
    """Register a user with the public half of their first key. Open to anyone, rate limited per
    address. Sending the same name and key again answers the same user (a safe retry)."""
    ctx = context(request)
    address = request.client.host if request.client else "unknown"
    wait = ctx.signups.take(f"signup:{address}")
    if wait > 0:
        raise ApiRefusal(
            429,
            "TooManyRequests",
            f"too many sign-ups from this address; try again in {retry_after_header(wait)}s",
            headers={"Retry-After": retry_after_header(wait)},
        )
    if body.name == ctx.settings.operator_user:
        raise ApiRefusal(409, USER_EXISTS, f"the name {body.name} is taken; choose another")
    record = _record(body.public_key, datetime.now(UTC))
    client = await ctx.client()
    try:
        async with workflow_call(missing="user", service="the user registry"):
            await registry.register_public_key(
                client, body.name, record, task_queue=ctx.settings.task_queue_ledger
            )
    except ApiRefusal as refusal:
        if refusal.error != USER_EXISTS:
            raise
        keys = await registry.user_keys(client, body.name)
        if not any(key.public_key == body.public_key for key in keys):
            raise ApiRefusal(
                409, USER_EXISTS, f"the name {body.name} is taken; choose another"
            ) from None
        response.status_code = 200
        return UserView(user=body.name, keys=keys)
    ctx.keys.forget(body.name)
    return UserView(user=body.name, keys=[record])


def _own_user(caller: Caller, name: str) -> None:
    if not caller.may_see(name):
        raise not_found("user")


@router.get("/v1/users/{name}", response_model=UserView)
async def read_user(name: Name, request: Request, caller: Caller = SignedCaller) -> UserView:
    """A user's keys and the periods in which each may sign (that user or the operator)."""
    _own_user(caller, name)
    client = await context(request).client()
    async with workflow_call(missing="user", service="the user registry"):
        keys = await registry.user_keys(client, name)
    return UserView(user=name, keys=keys)


@router.post("/v1/users/{name}/keys", response_model=UserView)
async def add_key(
    name: Name, body: AddKeyRequest, request: Request, caller: Caller = SignedCaller
) -> UserView:
    """Register another key on an order signed with a current key of this user (the registry
    checks it again); ``retire_others`` makes it a rotation: the older keys stop signing now, and
    what they signed before stays verifiable. The same order again answers the keys."""
    if caller.user != name:
        raise not_found("user")
    if body.user != name:
        raise ApiRefusal(422, "InvalidRequest", "user: the order names another user")
    ctx = context(request)
    client = await ctx.client()
    async with workflow_call(missing="user", service="the user registry"):
        keys = await registry.add_key(client, body)
    ctx.keys.forget(name)
    return UserView(user=name, keys=keys)


@router.post("/v1/users/{name}/keys/{key_id}/revoke", response_model=PublicKeyRecord)
async def revoke_key(
    name: Name,
    key_id: str,
    body: RevokeKeyRequest,
    request: Request,
    caller: Caller = SignedCaller,
) -> PublicKeyRecord:
    """Revoke a key on an order signed by this user or the operator (the registry checks it
    again): from now on the key signs nothing. The same order again answers the same record."""
    _own_user(caller, name)
    if body.user != name or body.key_id != key_id:
        raise ApiRefusal(422, "InvalidRequest", "key_id: the order names another key")
    if body.signed_by != caller.user:
        raise ApiRefusal(403, "NotYourRequest", "the order is signed by someone else")
    ctx = context(request)
    client = await ctx.client()
    async with workflow_call(missing="user", service="the user registry"):
        record = await registry.apply_revocation(client, body)
    ctx.keys.forget(name)
    return record
