"""Reading job sheets: from the workflow while it runs, else from the object store.

This mirrors :func:`jobsheet.jobs.client.load_sheet` but keeps the run's heartbeat progress as
the sheet's own progress model (that function rebuilds it without its required ``phase`` and
fails while a run is in flight), and reads the object store off the event loop.
"""

from __future__ import annotations

import asyncio

from minio.error import InvalidResponseError
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.compute.models import RunProgress
from jobsheet.jobs.client import job_handle
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.jobs.store import read_sheet
from jobsheet.objectstore import internal_client
from jobsheet.sdk.errors import NotFound
from jobsheet.sdk.service_errors import service_call
from jobsheet.settings import Settings
from workflows.job_sheet import JobSheetWorkflow


def _read_stored_sheet(settings: Settings, uid: str) -> JobSheet:
    try:
        return read_sheet(internal_client(settings), settings.bucket, uid)
    except InvalidResponseError as exc:
        # rclone answers a missing key with a 404 whose XML minio does not recognise
        # (Content-Type text/xml), which read_sheet does not take for "no such sheet".
        if getattr(exc, "_code", None) == 404:
            return JobSheet()
        raise


async def read_stored_sheet(settings: Settings, uid: str) -> JobSheet:
    """The persisted sheet of ``uid`` (a null sheet when there is none), off the event loop."""
    return await asyncio.to_thread(_read_stored_sheet, settings, uid)


async def fetch_sheet(client: Client, settings: Settings, uid: str) -> JobSheet:
    """The current sheet of job ``uid``, with live run progress; :class:`NotFound` if none."""
    handle = job_handle(client, uid)
    with service_call("reading the job sheet", uid=uid):
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            description = None
        if description is None or description.status != WorkflowExecutionStatus.RUNNING:
            sheet = await read_stored_sheet(settings, uid)
        else:
            sheet = await handle.query(JobSheetWorkflow.get_sheet)
            if sheet.state == JobState.RUNNING:
                progress = await _heartbeat_progress(client, description.raw_description)
                sheet.progress = progress or sheet.progress
    if sheet.is_null():
        raise NotFound(f"job {uid} does not exist", reason="UnknownJob")
    return sheet


async def _heartbeat_progress(client: Client, raw: object) -> RunProgress | None:
    for pending in getattr(raw, "pending_activities", []):
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED:
            continue
        if not pending.heartbeat_details.payloads:
            continue
        try:
            values = await client.data_converter.decode(
                pending.heartbeat_details.payloads, [RunProgress]
            )
        except Exception:  # another activity's heartbeat (e.g. a byte count): not progress
            continue
        if values and isinstance(values[0], RunProgress):
            return values[0]
    return None
