"""Listing jobs by state, account or user: Temporal visibility first, then the object store.

Temporal finds the jobs it still has through the JobState/JobAccount/JobUser search attributes.
Jobs it no longer has (past the namespace's retention) are found from their persisted sheets.
Filter values are names that passed the name rule, so they are safe inside a query.
"""

from __future__ import annotations

import asyncio
import re

from minio import Minio
from temporalio.client import Client

from jobsheet.contracts.api import JobSummary
from jobsheet.core import search_attributes
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.jobs.store import list_sheet_uids, read_sheet

SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:@-]{1,200}$")


def _value(name: str, value: str) -> str:
    if not SAFE_VALUE.match(value):
        raise ValueError(f"invalid {name} {value!r}: use letters, digits and . _ : @ -")
    return f"'{value}'"


def visibility_query(
    settings: Settings,
    *,
    state: JobState | None = None,
    account: str | None = None,
    user: str | None = None,
) -> str:
    """The visibility query for the deployment's job sheets, narrowed by the filters given."""
    clauses = [
        "WorkflowType = 'JobSheetWorkflow'",
        f"TaskQueue = {_value('task queue', settings.task_queue_jobs)}",
    ]
    if state is not None:
        clauses.append(f"{search_attributes.JOB_STATE.name} = '{state.value}'")
    if account:
        clauses.append(f"{search_attributes.JOB_ACCOUNT.name} = {_value('account', account)}")
    if user:
        clauses.append(f"{search_attributes.JOB_USER.name} = {_value('user', user)}")
    return " AND ".join(clauses)


async def _from_temporal(client: Client, query: str) -> dict[str, JobSummary]:
    found: dict[str, JobSummary] = {}
    async for execution in client.list_workflows(query):
        attributes = execution.typed_search_attributes
        state = attributes.get(search_attributes.JOB_STATE)
        summary = JobSummary(
            uid=execution.id,
            state=JobState(state) if state and state in JobState._value2member_map_ else None,
            account=attributes.get(search_attributes.JOB_ACCOUNT) or "",
            user=attributes.get(search_attributes.JOB_USER) or "",
            calculation=attributes.get(search_attributes.JOB_CALCULATION) or "",
            submitted_at=execution.start_time,
        )
        earlier = found.get(execution.id)
        if earlier is not None and earlier.submitted_at and summary.submitted_at:
            # A job continued as new (output retention) has several runs: the latest run has
            # the current state, the first one says when the job was submitted.
            latest = summary if summary.submitted_at >= earlier.submitted_at else earlier
            first = min(earlier.submitted_at, summary.submitted_at)
            summary = latest.model_copy(update={"submitted_at": first})
        found[execution.id] = summary
    return found


def _from_store(s3: Minio, bucket: str, skip: set[str]) -> list[JobSheet]:
    sheets = []
    for uid in list_sheet_uids(s3, bucket):
        if uid in skip:
            continue
        sheet = read_sheet(s3, bucket, uid)
        if not sheet.is_null():
            sheets.append(sheet)
    return sheets


def _summary_of(sheet: JobSheet) -> JobSummary:
    request = sheet.request
    return JobSummary(
        uid=sheet.uid,
        state=sheet.state,
        account=request.account if request else "",
        user=request.user if request else "",
        calculation=request.calculation if request else "",
        submitted_at=sheet.timeline[0].at if sheet.timeline else None,
        source="store",
    )


async def list_jobs(
    client: Client,
    settings: Settings,
    s3: Minio,
    *,
    state: JobState | None = None,
    account: str | None = None,
    user: str | None = None,
) -> list[JobSummary]:
    """Jobs matching every filter given, newest first."""
    matching = await _from_temporal(
        client, visibility_query(settings, state=state, account=account, user=user)
    )
    known = set(matching)
    if state or account or user:
        # Every job Temporal still has is answered from Temporal: the object store is read only
        # for the jobs it no longer has (past the namespace's retention).
        known |= set(await _from_temporal(client, visibility_query(settings)))
    stored = await asyncio.to_thread(_from_store, s3, settings.bucket, known)
    for sheet in stored:
        summary = _summary_of(sheet)
        if state is not None and summary.state != state:
            continue
        if (account and summary.account != account) or (user and summary.user != user):
            continue
        matching[summary.uid] = summary
    return sorted(
        matching.values(),
        key=lambda s: (s.submitted_at.timestamp() if s.submitted_at else 0.0, s.uid),
        reverse=True,
    )
