"""What happens to a job's storage after its workflow has ended, kept as markers in the bucket.

A job's workflow ends with its job. What must still happen later is written, in the same
activity that persists the final sheet, as one small marker object per clean-up under
``cleanups/<due>/``, named so that a listing in key order is a listing by due time:

- ``sweep``: once every PAR that could write under ``jobs/<uid>/`` has expired (a presigned PUT
  cannot be revoked), delete what such a write could have left: the staging prefix when the
  outputs are still kept, else everything under ``jobs/<uid>/``;
- ``retention``: when the outputs' retention ends, delete everything under ``jobs/<uid>/`` and
  mark the persisted sheet ``outputs_deleted``.

The storage sweep (``workflows/storage_sweep.py``, started by a Temporal Schedule) acts on the
markers that are due and then deletes them. Every action is idempotent, so a sweep that dies
half-way is simply repeated.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from minio import Minio
from minio.deleteobjects import DeleteObject
from pydantic import BaseModel, Field

from jobsheet.jobs.models import (
    JobSheet,
    JobState,
    ParKind,
    job_prefix,
    staging_prefix,
)
from jobsheet.jobs.store import read_sheet, write_sheet

log = logging.getLogger("jobsheet.cleanup")

MARKER_PREFIX = "cleanups/"
DUE_FORMAT = "%Y%m%dT%H%M%SZ"
# A presigned URL's life is checked by S3's clock, and it was signed by another host's: sweep
# this long after the last one can have expired.
SWEEP_MARGIN = timedelta(seconds=15)
RAN_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT})


class CleanupKind(StrEnum):
    SWEEP = "sweep"
    RETENTION = "retention"


class Cleanup(BaseModel):
    """One clean-up of one job's storage, due at ``due``."""

    uid: str = Field(pattern=r"^job-[0-9a-f]{32}$")
    kind: CleanupKind
    due: datetime

    @property
    def key(self) -> str:
        due = self.due.astimezone(UTC).strftime(DUE_FORMAT)
        return f"{MARKER_PREFIX}{due}/{self.uid}.{self.kind.value}"


class SweepReport(BaseModel):
    done: int = 0
    """Markers acted on and removed."""
    deleted_objects: int = 0
    pending: bool = False
    """More markers were due than one sweep takes: sweep again."""


def keeps_outputs(sheet: JobSheet) -> bool:
    """Does the ended job keep outputs for its owner to download?"""
    return sheet.state in RAN_STATES and bool(sheet.outputs) and not sheet.outputs_deleted


def _unkept_prefix(sheet: JobSheet, *, cleanup_uid: str) -> str:
    """What of ``jobs/<uid>/`` the job does not keep: the staging prefix while its outputs are
    kept, else all of it (``cleanup_uid`` names the job when its sheet is gone)."""
    return staging_prefix(cleanup_uid) if keeps_outputs(sheet) else job_prefix(cleanup_uid)


def plan(sheet: JobSheet, *, writes_end: datetime | None, now: datetime) -> list[Cleanup]:
    """The clean-ups an ended job still needs after ``now``: a sweep once the last PAR that
    could write has expired (``writes_end``), and the end of the outputs' retention."""
    planned: list[Cleanup] = []
    if writes_end is not None:
        planned.append(
            Cleanup(uid=sheet.uid, kind=CleanupKind.SWEEP, due=max(writes_end + SWEEP_MARGIN, now))
        )
    if keeps_outputs(sheet) and sheet.outputs_retained_until is not None:
        planned.append(
            Cleanup(
                uid=sheet.uid,
                kind=CleanupKind.RETENTION,
                due=max(sheet.outputs_retained_until, now),
            )
        )
    return planned


def delete_prefix(s3: Minio, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` (a job's own prefix only); idempotent."""
    if not prefix.startswith("jobs/job-") or not prefix.endswith("/"):
        raise ValueError(f"refusing to delete outside one job's prefix: {prefix!r}")
    names = [
        obj.object_name
        for obj in s3.list_objects(bucket, prefix=prefix, recursive=True)
        if obj.object_name
    ]
    errors = list(s3.remove_objects(bucket, [DeleteObject(n) for n in names]))
    if errors:
        raise RuntimeError(f"could not delete {len(errors)} objects under {prefix}: {errors[0]}")
    return len(names)


def finish(s3: Minio, bucket: str, sheet: JobSheet, cleanups: list[Cleanup]) -> int:
    """Persist an ended job's sheet, delete at once what it does not keep, and leave a marker
    for each clean-up still to come. Returns how many objects were deleted now."""
    for cleanup in cleanups:
        data = cleanup.model_dump_json().encode()
        s3.put_object(bucket, cleanup.key, io.BytesIO(data), len(data))
    write_sheet(s3, bucket, sheet)
    return delete_prefix(s3, bucket, _unkept_prefix(sheet, cleanup_uid=sheet.uid))


def due_markers(s3: Minio, bucket: str, now: datetime) -> Iterator[tuple[str, Cleanup | None]]:
    """Marker keys due at ``now``, each with its clean-up (None: unreadable)."""
    cutoff = now.astimezone(UTC).strftime(DUE_FORMAT)
    for obj in s3.list_objects(bucket, prefix=MARKER_PREFIX, recursive=True):
        key = obj.object_name or ""
        due = key.removeprefix(MARKER_PREFIX).split("/", 1)[0]
        if due > cutoff:
            continue  # not due yet (not every S3 server lists in key order)
        yield key, _read_marker(s3, bucket, key)


def _read_marker(s3: Minio, bucket: str, key: str) -> Cleanup | None:
    response = s3.get_object(bucket, key)
    try:
        return Cleanup.model_validate_json(response.read())
    except ValueError:
        log.warning("unreadable clean-up marker %s: removed", key)
        return None
    finally:
        response.close()
        response.release_conn()


def apply(s3: Minio, bucket: str, cleanup: Cleanup, now: datetime) -> int:
    """Do one clean-up; returns how many objects it deleted. Idempotent."""
    sheet = read_sheet(s3, bucket, cleanup.uid)
    if cleanup.kind == CleanupKind.SWEEP:
        return delete_prefix(s3, bucket, _unkept_prefix(sheet, cleanup_uid=cleanup.uid))
    deleted = delete_prefix(s3, bucket, job_prefix(cleanup.uid))
    if not sheet.is_null() and not sheet.outputs_deleted:
        sheet.outputs_deleted = True
        for par in sheet.pars:
            if par.kind == ParKind.DOWNLOAD and par.closed_at is None:
                par.closed_at = min(now, par.expires_at)
        write_sheet(s3, bucket, sheet)
    return deleted


def sweep(s3: Minio, bucket: str, now: datetime, *, limit: int = 500) -> SweepReport:
    """Act on up to ``limit`` due markers, removing each once done."""
    report = SweepReport()
    for key, cleanup in due_markers(s3, bucket, now):
        if report.done >= limit:
            report.pending = True
            break
        if cleanup is not None:
            report.deleted_objects += apply(s3, bucket, cleanup, now)
        s3.remove_object(bucket, key)
        report.done += 1
    return report
