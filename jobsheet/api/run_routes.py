"""``POST /par/run/{uid}/{token}``: the run PAR, a URL that triggers a job's run for its holder.

The token is the compute contract's run token (``secrets.token_urlsafe(32)``); the job sheet
workflow's ``trigger_run`` validator compares it in constant time and rejects a wrong one
before anything is written to history, so a refused call changes nothing. Answers (JSON;
refusals are ``{"error", "message"}``, see docs/par-gateway.md):

- 202 the run starts: ``{"uid", "state", "started", "message"}``;
- 404 ``NotFound``: no job has this run PAR (unknown job, or a wrong or altered token; which
  one is never said);
- 409 ``WrongState`` / ``AlreadyTriggered``: the job is not waiting for its run (not ready yet,
  already triggered, running or ended);
- 410 ``Expired``: the run PAR's deadline passed and the job was undone;
- 422 ``InputNotReady``: the input is missing or does not match the request (size, checksum);
- 429 ``TooManyRequests``: too many failed calls from this address, or too many calls with
  this job's right token (``Retry-After``);
- 503 ``Unavailable`` / 504 ``Timeout``: Temporal did not answer; call again.

Throttling never lets one caller lock another out. The job's persisted sheet records the sha256
of its run token, so a wrong token is refused here, without asking the job, and counted
against the caller's address only; a right token is never refused for anyone else's wrong
calls (only the job's own right-token calls are limited per job). An address whose failures
are used up is refused before any lookup, unless its token is a job's right token already
known to this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from collections import OrderedDict
from datetime import datetime

from fastapi import APIRouter
from minio import Minio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.api.rate_limit import TokenBuckets, retry_after_header
from jobsheet.api.temporal_clients import Connect, TemporalClients
from jobsheet.contracts.api import ApiError
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import connect
from jobsheet.jobs.models import JobSheet, JobState, ParKind
from jobsheet.jobs.operations import job_handle, live_sheet, load_sheet, trigger_run
from jobsheet.jobs.store import read_sheet

UID_SHAPE = re.compile(r"job-[0-9a-f]{32}")
RUN_ROUTE = "/par/run/{uid}/{token}"
# At least 128 bits of URL-safe base64; the contract's tokens are 43 characters (256 bits).
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{22,128}")
TRIGGER_TIMEOUT_SECONDS = 120.0
NOT_FOUND_MESSAGE = "no job has this run PAR: the job is unknown or the token is not its run token"
HINT = "call the run PAR with POST, e.g. curl -X POST '<run PAR URL>'"
LOOKUP_TIMEOUT_SECONDS = 1.0

log = logging.getLogger("jobsheet.api")


def refusal(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def not_found() -> JSONResponse:
    return refusal(404, "NotFound", NOT_FOUND_MESSAGE)


# The workflow's refusal types and the HTTP status each becomes (WrongToken hides as 404).
STATUS_FOR_TYPE = {
    "WrongToken": 404,
    "WrongState": 409,
    "AlreadyTriggered": 409,
    "Expired": 410,
    "InputNotReady": 422,
}


def answer_for_refusal(error_type: str, message: str) -> JSONResponse:
    """The HTTP answer for a refusal the job sheet workflow gave to ``trigger_run``."""
    status = STATUS_FOR_TYPE.get(error_type)
    if status is None:
        return refusal(500, "InternalError", "the job refused the run for an unexpected reason")
    if status == 404:
        return not_found()
    return refusal(status, error_type, message)


class RunTokenDigests:
    """The sha256 of each job's run token, read from the job's persisted sheet and kept (a
    digest never changes); the least recently used go first beyond ``max_keys``."""

    def __init__(self, settings: Settings, *, max_keys: int = 10_000) -> None:
        self._settings, self._max_keys = settings, max_keys
        self._s3: Minio | None = None
        self._known: OrderedDict[str, str] = OrderedDict()

    def _read(self, uid: str) -> JobSheet:
        if self._s3 is None:  # on first use: the API answers (by asking the job) without S3
            self._s3 = internal_client(self._settings)
        return read_sheet(self._s3, self._settings.bucket, uid)

    def cached(self, uid: str) -> str | None:
        digest = self._known.get(uid)
        if digest is not None:
            self._known.move_to_end(uid)
        return digest

    async def lookup(self, uid: str, clients: TemporalClients | None = None) -> str | None:
        """The digest the job's sheet records: the persisted one (an ended or running job), else
        the live one, asked of the job's workflow (a job awaiting its upload); None for no
        sheet, a sheet without one, or a store or job that does not answer in time."""
        for read in (self._persisted, self._live):
            try:
                sheet = await asyncio.wait_for(read(uid, clients), LOOKUP_TIMEOUT_SECONDS)
            except Exception:
                continue
            for par in sheet.pars if sheet is not None else []:
                if par.kind == ParKind.RUN and par.token_sha256:
                    self._known[uid] = par.token_sha256
                    while len(self._known) > self._max_keys:
                        self._known.popitem(last=False)
                    return par.token_sha256
        return None

    async def _persisted(self, uid: str, _clients: TemporalClients | None) -> JobSheet | None:
        return await asyncio.to_thread(self._read, uid)

    async def _live(self, uid: str, clients: TemporalClients | None) -> JobSheet | None:
        if clients is None:
            return None
        client = await clients.get()
        return await live_sheet(client, uid)


def token_matches(token: str, digest: str) -> bool:
    return secrets.compare_digest(hashlib.sha256(token.encode()).hexdigest(), digest)


def too_many(wait: float, what: str) -> JSONResponse:
    return refusal(
        429,
        "TooManyRequests",
        f"too many {what}; try again in {retry_after_header(wait)}s",
        headers={"Retry-After": retry_after_header(wait)},
    )


class RunParRoutes:
    """The run PAR route, bound to one settings object, its rate limits and Temporal clients."""

    def __init__(
        self,
        settings: Settings,
        *,
        connector: Connect = connect,
        clients: TemporalClients | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients or TemporalClients(settings, connector)
        # Right-token calls per job: only a holder of the run PAR can spend these.
        self.per_job = TokenBuckets(
            burst=settings.run_par_burst, per_minute=settings.run_par_per_minute
        )
        # Failed calls (wrong token, unknown job, malformed URL) per client address.
        self.failures = TokenBuckets(
            burst=settings.run_par_client_burst, per_minute=settings.run_par_client_per_minute
        )
        self.digests = RunTokenDigests(settings)

    def routes(self) -> list[BaseRoute]:
        router = APIRouter(tags=["PARs"])
        router.add_api_route(
            RUN_ROUTE,
            self.trigger,
            methods=["POST"],
            status_code=202,
            summary="Trigger a job's run (the run PAR: the URL is the only credential)",
            responses={code: {"model": ApiError} for code in (404, 409, 410, 422, 429, 503, 504)},
        )
        router.add_api_route(
            RUN_ROUTE,
            self.hint,
            methods=["GET", "HEAD"],
            include_in_schema=False,
        )
        return list(router.routes)

    async def hint(self, request: Request) -> JSONResponse:
        return refusal(405, "MethodNotAllowed", HINT, headers={"Allow": "POST"})

    def _failed(self, address: str) -> JSONResponse:
        """A wrong call: counted against its address; 404, or 429 once it has failed too often."""
        wait = self.failures.take(address)
        if wait > 0:
            return too_many(wait, "failed run PAR calls from this address")
        return not_found()

    async def trigger(self, request: Request) -> JSONResponse:
        uid = request.path_params["uid"]
        answer = await self._answer(request, uid, request.path_params["token"])
        if answer.status_code >= 400:
            # A user's refusal is one INFO line; the token never, the uid only when well formed.
            job = uid if UID_SHAPE.fullmatch(uid) else "malformed"
            reason = json.loads(bytes(answer.body)).get("error", "Refused")
            fields = {
                "job": job,
                "route": RUN_ROUTE,
                "status": answer.status_code,
                "reason": reason,
            }
            log.info(
                "refused a run PAR call for %s: %d %s",
                job,
                answer.status_code,
                reason,
                extra=fields,
            )
        return answer

    async def _answer(self, request: Request, uid: str, token: str) -> JSONResponse:
        address = request.client.host if request.client else "unknown"
        if not UID_SHAPE.fullmatch(uid) or not TOKEN_SHAPE.fullmatch(token):
            return self._failed(address)
        digest = self.digests.cached(uid)
        if digest is None:
            wait = self.failures.peek(address)
            if wait > 0:
                return too_many(wait, "failed run PAR calls from this address")
            digest = await self.digests.lookup(uid, self.clients)
        if digest is not None:
            if not token_matches(token, digest):
                return self._failed(address)
            wait = self.per_job.take(uid)
            if wait > 0:
                return too_many(wait, "run PAR calls for this job")
        answer = await self._call(uid, token)
        if digest is None and answer.status_code == 404:
            # No digest to judge by (an older job, or its sheet not yet persisted): the job
            # judged the token, and a wrong one counts against the address all the same.
            self.failures.take(address)
        return answer

    async def _call(self, uid: str, token: str) -> JSONResponse:
        """Ask the job (the validator compares the token again, in constant time)."""
        try:
            client = await self.clients.get()
        except Exception:
            return refusal(503, "Unavailable", "the job service is unavailable; call again later")
        try:
            async with asyncio.timeout(TRIGGER_TIMEOUT_SECONDS):
                return await self._trigger(client, uid, token)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            return refusal(504, "Timeout", "the job did not answer in time; call the run PAR again")
        except RPCError:
            return refusal(503, "Unavailable", "the job service is unavailable; call again later")
        except Exception:
            log.exception("run PAR call for %s failed", uid)
            return refusal(500, "InternalError", "the run PAR call failed; see the API's log")

    async def _trigger(self, client: Client, uid: str, token: str) -> JSONResponse:
        try:
            result = await trigger_run(client, uid, token)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if not isinstance(cause, ApplicationError):
                raise
            if cause.type == "AlreadyTriggered":
                # The token was right (the validator checks it first), so the state may be told.
                sheet = await load_sheet(client, self.settings, uid)
                if sheet.state == JobState.EXPIRED:
                    return self._expired(sheet.expires_at)
            return answer_for_refusal(cause.type or "", cause.message)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return await self._ended(client, uid, token)
        if not result.started:
            return refusal(409, "AlreadyTriggered", result.message)
        return JSONResponse(result.model_dump(mode="json"), status_code=202)

    async def _ended(self, client: Client, uid: str, token: str) -> JSONResponse:
        """The workflow is unknown or closed: compare the token with the digest its final sheet
        records."""
        try:
            description = await job_handle(client, uid).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return not_found()
            raise
        if description.status == WorkflowExecutionStatus.RUNNING:
            return refusal(503, "Unavailable", "the job is busy; call the run PAR again")
        digest = await self.digests.lookup(uid)  # an ended job's final sheet records it
        if digest is None or not token_matches(token, digest):
            return not_found()
        sheet = await load_sheet(client, self.settings, uid)
        if sheet.state == JobState.EXPIRED:
            return self._expired(sheet.expires_at)
        return refusal(409, "WrongState", f"the job already ended as {sheet.state.value}")

    @staticmethod
    def _expired(expires_at: datetime | None) -> JSONResponse:
        when = f" at {expires_at.isoformat()}" if expires_at else ""
        return refusal(
            410,
            "Expired",
            f"the run PAR expired{when}: no run was triggered in time, so the job was undone "
            "and its cheque refunded",
        )


def routes(settings: Settings, clients: TemporalClients | None = None) -> list[BaseRoute]:
    """The run PAR routes for ``settings``."""
    return RunParRoutes(settings, clients=clients).routes()
