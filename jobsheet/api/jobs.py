"""``/v1/jobs`` and ``/v1/calculations``: submit, read, list, watch, cancel and download.

A user sees and acts on their own jobs only; another user's job answers exactly as a job that
does not exist. The operator sees every job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.api.auth import Caller, SignedCaller
from jobsheet.api.context import ApiContext, context
from jobsheet.api.errors import ApiRefusal, not_found
from jobsheet.api.workflow_answers import unavailable
from jobsheet.compute.config import load_compute_config
from jobsheet.contracts.api import (
    CalculationList,
    CalculationView,
    CancelRequest,
    JobList,
    SubmitAnswer,
    SubmitRequest,
    WatchEvent,
)
from jobsheet.core.names import Name
from jobsheet.jobs.listing import list_jobs
from jobsheet.jobs.messages import DownloadPars, cancel_resource
from jobsheet.jobs.models import JobSheet, JobState, job_uid_for
from jobsheet.jobs.operations import cancel_job, load_sheet, submit_job
from jobsheet.pars.downloads import NoOutputs, OutputsGone, presign_downloads

public = APIRouter(tags=["calculations"])
router = APIRouter(tags=["jobs"])

JobUid = Path(pattern=r"^job-[0-9a-f]{32}$", description="the job uid")
WATCH_INTERVAL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
DOWNLOADABLE = (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT)


@public.get("/v1/calculations", response_model=CalculationList)
async def calculations(request: Request) -> CalculationList:
    """Every calculation the operator offers: its parameters (a JSON schema), its services,
    its prices and its quote, the amount a job holds from the cheque."""
    settings = context(request).settings
    config = await asyncio.to_thread(load_compute_config, settings.calculations_file)
    views = [
        CalculationView(
            name=calc.name,
            description=calc.description,
            services=list(calc.services),
            parameters=calc.parameters,
            reads_input=any("{input}" in arg for arg in calc.argv),
            price_per_second=calc.price_per_second,
            fee=calc.fee,
            max_runtime_seconds=calc.max_runtime_seconds,
            quote=calc.max_cost(),
        )
        for calc in config.calculations.values()
    ]
    return CalculationList(
        calculations=sorted(views, key=lambda view: view.name), payee=settings.provider_account
    )


def _job_refusal(exc: WorkflowUpdateFailedError) -> ApiRefusal:
    cause: BaseException | None = exc.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    if not isinstance(cause, ApplicationError):
        return ApiRefusal(409, "Refused", f"the job refused: {exc.cause or exc}")
    if cause.type == "JobRejected":
        # "Cause: text" from the workflow: the cause names what to fix.
        kind, _, text = cause.message.partition(": ")
        if text and " " not in kind:
            return ApiRefusal(409, kind, f"the job was rejected: {text}")
        return ApiRefusal(409, "JobRejected", f"the job was rejected: {cause.message}")
    return ApiRefusal(409, cause.type or "Refused", cause.message)


@router.post("/v1/jobs", status_code=201, response_model=SubmitAnswer)
async def submit(
    body: SubmitRequest, request: Request, caller: Caller = SignedCaller
) -> SubmitAnswer:
    """Pay for a job with a cheque and get its PARs. The authorisation makes the request
    single-use: sent again (an answer lost on the way), it answers the same job's PARs."""
    if body.request.user != caller.user or body.authorisation.user != caller.user:
        raise ApiRefusal(
            403, "NotYourRequest", "a job request and its authorisation must be the signer's own"
        )
    ctx = context(request)
    client = await ctx.client()
    try:
        result = await submit_job(
            client,
            ctx.settings,
            request=body.request,
            authorisation=body.authorisation,
            cheque=body.cheque,
        )
    except WorkflowUpdateFailedError as exc:
        raise _job_refusal(exc) from None
    except WorkflowAlreadyStartedError:
        uid = job_uid_for(body.authorisation.signature)
        sheet = await load_sheet(client, ctx.settings, uid)
        raise ApiRefusal(
            409, "JobEnded", f"this submission made job {uid}, which ended as {sheet.state.value}"
        ) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise ApiRefusal(504, "Timeout", "the job did not answer in time; send it again") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.ALREADY_EXISTS:
            raise ApiRefusal(409, "JobEnded", "this submission's job has already ended") from None
        raise unavailable("the job service") from None
    return SubmitAnswer.model_validate(result.model_dump())


async def own_sheet(ctx: ApiContext, client: Client, caller: Caller, uid: str) -> JobSheet:
    """The sheet of job ``uid`` if the caller may see it; else the same 404 as no job."""
    try:
        sheet = await load_sheet(client, ctx.settings, uid)
    except RPCError:
        raise unavailable("the job service") from None
    owner = sheet.request.user if sheet.request else None
    if sheet.is_null() or not caller.may_see(owner):
        raise not_found("job")
    return sheet


@router.get("/v1/jobs", response_model=JobList)
async def list_my_jobs(
    request: Request,
    state: JobState | None = None,
    account: Name | None = None,
    user: Name | None = Query(default=None, description="operator only: another user's jobs"),
    caller: Caller = SignedCaller,
) -> JobList:
    """The caller's jobs, newest first, by state and paying account (the operator: anyone's)."""
    if user is not None and not caller.may_see(user):
        raise not_found("user")
    ctx = context(request)
    client = await ctx.client()
    try:
        jobs = await list_jobs(
            client,
            ctx.settings,
            ctx.s3,
            state=state,
            account=account,
            user=user if caller.operator else caller.user,
        )
    except RPCError:
        raise unavailable("the job service") from None
    return JobList(jobs=jobs)


@router.get("/v1/jobs/{uid}", response_model=JobSheet)
async def read_job(request: Request, uid: str = JobUid, caller: Caller = SignedCaller) -> JobSheet:
    """The job sheet: from the running workflow (with live run progress), else as persisted."""
    ctx = context(request)
    return await own_sheet(ctx, await ctx.client(), caller, uid)


def _sse(event: WatchEvent) -> bytes:
    return f"event: {event.kind}\ndata: {event.model_dump_json()}\n\n".encode()


async def _events(
    ctx: ApiContext, client: Client, caller: Caller, uid: str
) -> AsyncIterator[bytes]:
    seen = 0
    last_progress = None
    quiet_since = asyncio.get_running_loop().time()
    while True:
        try:
            sheet = await own_sheet(ctx, client, caller, uid)
        except ApiRefusal as refusal:
            yield f"event: error\ndata: {json.dumps({'error': refusal.error, 'message': refusal.message})}\n\n".encode()
            return
        sent = False
        for entry in sheet.timeline[seen:]:
            sent = True
            yield _sse(
                WatchEvent(kind="state", uid=uid, state=entry.state, at=entry.at, note=entry.note)
            )
        seen = len(sheet.timeline)
        if sheet.terminal:
            return
        progress = sheet.progress
        if sheet.state == JobState.RUNNING and progress is not None and progress != last_progress:
            last_progress = progress
            sent = True
            yield _sse(
                WatchEvent(
                    kind="progress",
                    uid=uid,
                    state=sheet.state,
                    at=datetime.now(UTC),
                    progress=progress,
                )
            )
        now = asyncio.get_running_loop().time()
        if sent:
            quiet_since = now
        elif now - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = now
            yield b": keep-alive\n\n"
        await asyncio.sleep(WATCH_INTERVAL_SECONDS)


@router.get(
    "/v1/jobs/{uid}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "WatchEvent stream"}},
)
async def watch_job(
    request: Request, uid: str = JobUid, caller: Caller = SignedCaller
) -> StreamingResponse:
    """Server-Sent Events: one ``state`` event per state the job entered (from the first) and
    one ``progress`` event per progress report of its run; the stream ends after the end."""
    ctx = context(request)
    client = await ctx.client()
    await own_sheet(ctx, client, caller, uid)
    return StreamingResponse(
        _events(ctx, client, caller, uid),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/v1/jobs/{uid}/cancel", response_model=JobSheet)
async def cancel(
    body: CancelRequest, request: Request, uid: str = JobUid, caller: Caller = SignedCaller
) -> JobSheet:
    """The owner cancels: what was done is undone in reverse, and the final sheet answers.
    Cancelling a job that already ended as cancelled answers its sheet again."""
    ctx = context(request)
    client = await ctx.client()
    sheet = await own_sheet(ctx, client, caller, uid)
    if sheet.request is None or caller.user != sheet.request.user:
        raise not_found("job")
    if body.authorisation.user != caller.user or body.authorisation.resource != cancel_resource(
        uid
    ):
        raise ApiRefusal(
            403, "NotYourRequest", f"the authorisation must be yours, for {cancel_resource(uid)}"
        )
    if sheet.state == JobState.CANCELLED:
        return sheet
    if sheet.terminal:
        raise ApiRefusal(409, "WrongState", f"the job already ended as {sheet.state.value}")
    try:
        return await cancel_job(client, uid, body.authorisation, reason=body.reason)
    except WorkflowUpdateFailedError as exc:
        refusal = _job_refusal(exc)
        if refusal.error == "WrongState":
            ended = await own_sheet(ctx, client, caller, uid)
            if ended.state == JobState.CANCELLED:
                return ended
        raise refusal from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the job ended (its workflow closed) meanwhile
            ended = await own_sheet(ctx, client, caller, uid)
            if ended.state == JobState.CANCELLED:
                return ended
            if ended.terminal:
                raise ApiRefusal(
                    409, "WrongState", f"the job already ended as {ended.state.value}"
                ) from None
        raise unavailable("the job service") from None


@router.post("/v1/jobs/{uid}/downloads", response_model=DownloadPars)
async def downloads(
    request: Request, uid: str = JobUid, caller: Caller = SignedCaller
) -> DownloadPars:
    """Fresh download PARs for the outputs, presigned from the job's persisted final sheet,
    until the outputs' retention ends."""
    ctx = context(request)
    client = await ctx.client()
    sheet = await own_sheet(ctx, client, caller, uid)
    if sheet.state not in DOWNLOADABLE:
        raise ApiRefusal(
            409,
            "WrongState",
            f"outputs are downloadable once the job has run; it is {sheet.state.value}",
        )
    return await asyncio.to_thread(_pars_from_sheet, ctx, sheet)


def _pars_from_sheet(ctx: ApiContext, sheet: JobSheet) -> DownloadPars:
    """Presign the outputs of an ended job, from its final sheet."""
    try:
        return presign_downloads(
            ctx.presigner,
            ctx.settings.bucket,
            sheet,
            max_seconds=ctx.settings.download_par_seconds,
        )
    except OutputsGone as exc:
        raise ApiRefusal(410, "OutputsDeleted", str(exc)) from None
    except NoOutputs as exc:
        raise ApiRefusal(409, "NoOutputs", str(exc)) from None
