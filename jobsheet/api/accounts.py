"""``/v1/accounts``: open an account, read its balance and statement, and (operator) deposit."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Query, Request, Response

from jobsheet.api.auth import Caller, SignedCaller, operator_only
from jobsheet.api.context import ApiContext, context
from jobsheet.api.errors import ApiRefusal, not_found
from jobsheet.api.users import IdempotencyKey
from jobsheet.api.workflow_answers import workflow_call
from jobsheet.contracts.api import OpenAccountRequest, StatementLine, StatementView
from jobsheet.core.names import Name
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.errors import ACCOUNT_EXISTS
from jobsheet.ledger.models import BalanceView, DepositInput

router = APIRouter(tags=["accounts"])


def account_uid_for(user: str, idempotency_key: str) -> str:
    """The uid of an account opened without a name: the same for a retried request."""
    return "acct-" + hashlib.sha256(f"{user}\n{idempotency_key}".encode()).hexdigest()[:12]


async def _own_balance(ctx: ApiContext, caller: Caller, account: str) -> BalanceView:
    client = await ctx.client()
    async with workflow_call(missing="account", service="the ledger"):
        view = await ledger.balance(client, account)
    if not caller.may_see(view.owner):
        raise not_found("account")
    return view


@router.post("/v1/accounts", status_code=201, response_model=BalanceView)
async def open_account(
    body: OpenAccountRequest,
    request: Request,
    response: Response,
    idempotency_key: str = IdempotencyKey,
    caller: Caller = SignedCaller,
) -> BalanceView:
    """Open an account owned by the caller. A retry (same name, or same Idempotency-Key) answers
    the account already opened."""
    ctx = context(request)
    uid = body.account or account_uid_for(caller.user, idempotency_key)
    client = await ctx.client()
    try:
        async with workflow_call(missing="account", service="the ledger"):
            await ledger.open_account(
                client, owner=caller.user, account=uid, task_queue=ctx.settings.task_queue_ledger
            )
    except ApiRefusal as refusal:
        if refusal.error != ACCOUNT_EXISTS:
            raise
        async with workflow_call(missing="account", service="the ledger"):
            view = await ledger.balance(client, uid)
        if view.owner != caller.user:
            raise ApiRefusal(409, ACCOUNT_EXISTS, f"the account name {uid} is taken") from None
        response.status_code = 200
        return view
    async with workflow_call(missing="account", service="the ledger"):
        return await ledger.balance(client, uid)


@router.get("/v1/accounts/{account}", response_model=BalanceView)
async def read_balance(
    account: Name, request: Request, caller: Caller = SignedCaller
) -> BalanceView:
    """Balance, held, available and in-flight money (the owner or the operator)."""
    return await _own_balance(context(request), caller, account)


@router.get("/v1/accounts/{account}/statement", response_model=StatementView)
async def read_statement(
    account: Name,
    request: Request,
    limit: int = Query(default=50, ge=1, le=200),
    caller: Caller = SignedCaller,
) -> StatementView:
    """The most recent ledger entries of an account, each naming the job it belongs to."""
    ctx = context(request)
    await _own_balance(ctx, caller, account)
    client = await ctx.client()
    async with workflow_call(missing="account", service="the ledger"):
        statement = await ledger.statement(client, account, limit=limit)
    lines = [StatementLine(entry=entry, job_uid=entry.job_uid) for entry in statement.entries]
    return StatementView(balance=statement.view, lines=lines)


@router.post("/v1/accounts/{account}/deposits", response_model=BalanceView)
async def deposit(
    account: Name, body: DepositInput, request: Request, caller: Caller = SignedCaller
) -> BalanceView:
    """Money enters an account only by the operator's signed deposit; the account checks the
    operator's signature itself. The same idempotency key again answers the first result."""
    operator_only(caller)
    if body.account != account:
        raise ApiRefusal(422, "InvalidRequest", "account: the deposit names another account")
    client = await context(request).client()
    async with workflow_call(missing="account", service="the ledger"):
        return await ledger.apply_deposit(client, account, body)
