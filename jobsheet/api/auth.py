"""Who is calling: every ``/v1`` route but the public ones depends on :func:`signed_caller`.

The request must carry an RFC 9421 signature (jobsheet.identity.http_signing) by a registered key that
may sign now; the target URI checked is the one the caller used, ``JOBSHEET_API_URL`` + path.
Every failure is a 401 whose ``error`` names the reason and whose message never says whether
the thing asked for exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Depends, Request
from temporalio.service import RPCError

from jobsheet.api.context import ApiContext, context
from jobsheet.api.errors import ApiRefusal
from jobsheet.core.names import NAME_PATTERN
from jobsheet.identity.http_signing import (
    RequestToVerify,
    SignatureProblem,
    check_freshness,
    claimed_signer,
    verify_request,
)

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Signature realm="jobsheet"'}


@dataclass(frozen=True)
class Caller:
    """A verified caller: the user, the key that signed, and whether that user is the operator."""

    user: str
    key_id: str
    operator: bool

    def may_see(self, owner: str | None) -> bool:
        """The operator sees everything; a user sees their own things only."""
        return self.operator or (owner is not None and owner == self.user)


def _unauthorised(problem: SignatureProblem) -> ApiRefusal:
    return ApiRefusal(401, problem.reason, problem.message, headers=WWW_AUTHENTICATE)


def signed_url(ctx: ApiContext, request: Request) -> str:
    """The URL as the caller addressed it: the public API URL, then path and query as sent."""
    query = request.url.query
    return ctx.settings.api_url + request.url.path + (f"?{query}" if query else "")


async def signed_caller(request: Request) -> Caller:
    """The verified signer of ``request``, or a 401 naming why not."""
    ctx = context(request)
    body = await request.body()
    now = datetime.now(UTC)
    try:
        user, key_id, created = claimed_signer(request.headers)
        check_freshness(
            created, now, max_skew=timedelta(seconds=ctx.settings.api_signature_max_skew_seconds)
        )
        if not NAME_PATTERN.match(user):
            raise SignatureProblem("UnknownKey", "the signing key is not registered")
        try:
            keys = await ctx.keys.keys_of(user)
        except RPCError:
            raise ApiRefusal(
                503, "Unavailable", "the key registry is unavailable; call again"
            ) from None
        record = next((key for key in keys or [] if key.key_id == key_id), None)
        if record is None:
            raise SignatureProblem(
                "UnknownKey", "the signing key is not registered (check your user name and key)"
            )
        if not record.may_sign_at(now):
            raise SignatureProblem(
                "KeyRevoked",
                "the signing key was revoked or retired by a rotation; sign with a current key",
            )
        verify_request(
            RequestToVerify(
                method=request.method, url=signed_url(ctx, request), headers=request.headers
            ),
            body,
            key=record,
            max_skew=timedelta(seconds=ctx.settings.api_signature_max_skew_seconds),
        )
    except SignatureProblem as problem:
        raise _unauthorised(problem) from None
    return Caller(user=user, key_id=key_id, operator=user == ctx.settings.operator_user)


SignedCaller = Depends(signed_caller)
"""For a route's signature: ``caller: Caller = SignedCaller``."""


def operator_only(caller: Caller) -> None:
    if not caller.operator:
        raise ApiRefusal(403, "OperatorOnly", "only the operator's key may do this")
