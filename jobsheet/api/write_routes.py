"""``POST /par/write/{token}``: exchange a bucket-write PAR for a presigned PUT of one key.

Body ``{"key": "relative/key"}``; answer ``{"url", "key", "expires_at"}`` where ``key`` is the
full object key (prefix + relative key) and the URL expires no later than the capability, nor
later than the capability's ``url_seconds`` (at most 15 minutes). A genuine capability is only
honoured while its job is running: the route reads the sheet the job's workflow persisted at its
last state change (``jobsheets/<uid>.json``), so the PAR dies as soon as the job settles.
Refusals are JSON ``{"error", "message"}`` with 400 (bad key or body), 403 (forged),
404 (not a capability), 410 (expired, or the job is not running) or 503 (the job's state could
not be read in time; ask again).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute

from jobsheet.contracts.api import ApiError
from jobsheet.core.objectstore import compute_presign_client, internal_client
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobState
from jobsheet.jobs.store import read_sheet
from jobsheet.pars.write import (
    MAX_URL_SECONDS,
    BadOutputKey,
    ExpiredWritePar,
    JobNotRunning,
    WriteParError,
    key_inside_prefix,
    verify_write_token,
)

MAX_URL_LIFETIME = timedelta(seconds=MAX_URL_SECONDS)
STATE_TIMEOUT_SECONDS = 1.0
"""How long the route waits for the job's persisted state before answering 503."""

log = logging.getLogger("jobsheet.api")


def refusal(error: WriteParError) -> JSONResponse:
    return JSONResponse(
        {"error": type(error).__name__, "message": str(error)}, status_code=error.status
    )


def routes(settings: Settings) -> list[BaseRoute]:
    """The bucket-write routes, bound to one settings object, a presign client and the internal
    S3 client that reads job sheets."""
    signing_key = settings.par_signing_key()
    presigner = compute_presign_client(settings)
    s3 = internal_client(settings)

    async def job_state(uid: str) -> JobState | None:
        sheet = await asyncio.wait_for(
            asyncio.to_thread(read_sheet, s3, settings.bucket, uid), STATE_TIMEOUT_SECONDS
        )
        return None if sheet.is_null() else sheet.state

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
            try:
                state = await job_state(capability.job_uid)
            except Exception:
                log.warning("could not read the state of %s for a write PAR", capability.job_uid)
                return JSONResponse(
                    {
                        "error": "Unavailable",
                        "message": "the job's state could not be read; ask again",
                    },
                    status_code=503,
                    headers={"Retry-After": "1"},
                )
            if state != JobState.RUNNING:
                raise JobNotRunning(
                    "the bucket-write PAR's job is not running"
                    + (f" (it is {state.value})" if state is not None else "")
                    + ": it grants nothing"
                )
        except WriteParError as error:
            return refusal(error)
        lifetime = min(
            timedelta(seconds=remaining),
            timedelta(seconds=capability.url_seconds),
            MAX_URL_LIFETIME,
        )
        url = presigner.presigned_put_object(settings.bucket, full_key, expires=lifetime)
        expires_at = now.replace(microsecond=0) + lifetime
        return JSONResponse({"url": url, "key": full_key, "expires_at": expires_at.isoformat()})

    router = APIRouter(tags=["PARs"])
    router.add_api_route(
        "/par/write/{token}",
        exchange_write_par,
        methods=["POST"],
        summary="Exchange a bucket-write PAR for a presigned PUT of one output key",
        responses={code: {"model": ApiError} for code in (400, 403, 404, 410, 503)},
    )
    return list(router.routes)
