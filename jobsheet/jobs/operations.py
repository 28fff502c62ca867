"""Talking to job sheet workflows from outside: submit, trigger, cancel, download, load.

This is what the public API calls (and the operator's tools); users never touch Temporal.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.compute.models import RUN_ACTIVITY, RunProgress
from jobsheet.core import search_attributes
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.identity.authorisation import Authorisation
from jobsheet.jobs import details
from jobsheet.jobs.messages import (
    CancelInput,
    JobStart,
    SubmitInput,
    SubmitResult,
    TriggerRunInput,
    TriggerRunResult,
)
from jobsheet.jobs.models import JobRequest, JobSheet, JobState, job_uid_for
from jobsheet.jobs.store import read_sheet
from jobsheet.ledger.cheque import Cheque
from workflows.job_sheet import JobSheetWorkflow


def job_start(*, request: JobRequest, authorisation: Authorisation, cheque: Cheque) -> JobStart:
    """The workflow input for a submission; the uid comes from the authorisation's signature."""
    return JobStart(
        uid=job_uid_for(authorisation.signature),
        request=request,
        authorisation=authorisation,
        cheque=cheque,
    )


def start_options(settings: Settings, start: JobStart, *, search: bool = True) -> dict[str, object]:
    """How the workflow is started: id = job uid, never reused, findable in the Web UI."""
    request = start.request
    options: dict[str, object] = {
        "id": start.uid,
        "task_queue": settings.task_queue_jobs,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "static_summary": details.static_summary(start.uid, request),
        "static_details": details.static_details(request),
    }
    if search:
        options["search_attributes"] = TypedSearchAttributes(
            [
                SearchAttributePair(search_attributes.JOB_STATE, JobState.SUBMITTED.value),
                SearchAttributePair(search_attributes.JOB_ACCOUNT, request.account),
                SearchAttributePair(search_attributes.JOB_USER, request.user),
                SearchAttributePair(search_attributes.JOB_CALCULATION, request.calculation),
            ]
        )
    return options


async def submit_job(
    client: Client,
    settings: Settings,
    *,
    request: JobRequest,
    authorisation: Authorisation,
    cheque: Cheque,
) -> SubmitResult:
    """Start the job sheet and wait for its PARs (update-with-start): one round trip.

    A replayed authorisation names the same job uid, so it cannot start a second job: sent
    again, the same submission reaches the running job and gets its PARs back (a safe retry).
    """
    start = job_start(request=request, authorisation=authorisation, cheque=cheque)
    operation = WithStartWorkflowOperation(  # type: ignore[call-overload]
        JobSheetWorkflow.run,
        start,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        **start_options(settings, start),
    )
    return await client.execute_update_with_start_workflow(
        JobSheetWorkflow.submit, SubmitInput(), start_workflow_operation=operation
    )


def job_handle(client: Client, uid: str) -> WorkflowHandle[JobSheetWorkflow, JobSheet]:
    return client.get_workflow_handle_for(JobSheetWorkflow.run, uid)


async def live_sheet(client: Client, uid: str) -> JobSheet:
    """The sheet as the job's workflow holds it now (also replayed for a closed workflow)."""
    return await job_handle(client, uid).query(JobSheetWorkflow.get_sheet)


async def trigger_run(client: Client, uid: str, token: str) -> TriggerRunResult:
    return await job_handle(client, uid).execute_update(
        JobSheetWorkflow.trigger_run, TriggerRunInput(token=token)
    )


async def cancel_job(
    client: Client, uid: str, authorisation: Authorisation, *, reason: str | None = None
) -> JobSheet:
    """Cancel as the owner (``authorisation`` for ``cancel:<uid>``); returns the ended sheet."""
    request = CancelInput(authorisation=authorisation)
    if reason:
        request = CancelInput(authorisation=authorisation, reason=reason)
    return await job_handle(client, uid).execute_update(JobSheetWorkflow.cancel, request)


async def load_sheet(client: Client, settings: Settings, uid: str) -> JobSheet:
    """The job sheet: from the workflow while it runs, else from the object store.

    While the run activity is in flight, its latest heartbeat (elapsed, CPU, bytes written,
    fraction) is merged in as ``progress``; it costs no workflow history.
    """
    handle = job_handle(client, uid)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        description = None
    if description is None or description.status != WorkflowExecutionStatus.RUNNING:
        return await asyncio.to_thread(read_sheet, internal_client(settings), settings.bucket, uid)
    sheet = await handle.query(JobSheetWorkflow.get_sheet)
    if sheet.state == JobState.RUNNING:
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name != RUN_ACTIVITY:
                continue
            if not pending.heartbeat_details.payloads:
                continue
            values = await client.data_converter.decode(pending.heartbeat_details.payloads)
            try:
                progress = RunProgress.model_validate(values[0])
            except ValidationError:
                continue
            sheet.progress = progress
    return sheet
