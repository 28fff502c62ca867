"""Reading job sheets for the SDK: :func:`jobsheet.jobs.client.load_sheet`, with SDK errors."""

from __future__ import annotations

from temporalio.client import Client

from jobsheet.jobs.client import load_sheet
from jobsheet.jobs.models import JobSheet
from jobsheet.sdk.errors import NotFound
from jobsheet.sdk.service_errors import service_call
from jobsheet.settings import Settings


async def fetch_sheet(client: Client, settings: Settings, uid: str) -> JobSheet:
    """The current sheet of job ``uid``, with live run progress; :class:`NotFound` if none."""
    with service_call("reading the job sheet", uid=uid):
        sheet = await load_sheet(client, settings, uid)
    if sheet.is_null():
        raise NotFound(f"job {uid} does not exist", reason="UnknownJob")
    return sheet
