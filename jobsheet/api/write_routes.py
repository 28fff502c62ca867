"""``POST /par/write/{token}``: exchange a bucket-write PAR for a presigned PUT of one key.

Body ``{"key": "relative/key"}``; answer ``{"url", "key", "expires_at"}`` where ``key`` is the
full object key (prefix + relative key) and the URL expires no later than the capability.
Refusals are JSON ``{"error", "message"}`` with 400 (bad key or body), 403 (forged),
404 (not a capability) or 410 (expired).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute

from jobsheet.contracts.api import ApiError
from jobsheet.objectstore import compute_presign_client
from jobsheet.settings import Settings
from jobsheet.write_par import (
    BadOutputKey,
    ExpiredWritePar,
    WriteParError,
    key_inside_prefix,
    verify_write_token,
)

MAX_URL_LIFETIME = timedelta(minutes=15)


def refusal(error: WriteParError) -> JSONResponse:
    return JSONResponse(
        {"error": type(error).__name__, "message": str(error)}, status_code=error.status
    )


def routes(settings: Settings) -> list[BaseRoute]:
    """The bucket-write routes, bound to one settings object and one presign client."""
    signing_key = settings.par_signing_key()
    presigner = compute_presign_client(settings)

    async def exchange_write_par(request: Request) -> JSONResponse:
        now = datetime.now(UTC)
        try:
            capability = verify_write_token(signing_key, request.path_params["token"], now=now)
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise BadOutputKey('the body must be JSON: {"key": "relative/key"}') from None
            relative = body.get("key") if isinstance(body, dict) else None
            if not isinstance(relative, str):
                raise BadOutputKey('the body must name a string key: {"key": "relative/key"}')
            full_key = key_inside_prefix(capability, relative)
            remaining = int(capability.expires_at - now.timestamp())
            if remaining < 1:
                raise ExpiredWritePar("the bucket-write PAR expires in under a second")
        except WriteParError as error:
            return refusal(error)
        lifetime = min(timedelta(seconds=remaining), MAX_URL_LIFETIME)
        url = presigner.presigned_put_object(settings.bucket, full_key, expires=lifetime)
        expires_at = now.replace(microsecond=0) + lifetime
        return JSONResponse({"url": url, "key": full_key, "expires_at": expires_at.isoformat()})

    router = APIRouter(tags=["PARs"])
    router.add_api_route(
        "/par/write/{token}",
        exchange_write_par,
        methods=["POST"],
        summary="Exchange a bucket-write PAR for a presigned PUT of one output key",
        responses={code: {"model": ApiError} for code in (400, 403, 404, 410)},
    )
    return list(router.routes)
