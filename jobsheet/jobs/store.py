"""Reading persisted job sheets from the object store (``jobsheets/<uid>.json``)."""

from __future__ import annotations

import io
import json

from minio import Minio

from jobsheet.core.objectstore import MissingOrError, is_not_found
from jobsheet.jobs.models import JobSheet, sheet_key


def read_sheet(s3: Minio, bucket: str, uid: str) -> JobSheet:
    """The persisted sheet for ``uid``, or an empty (null) sheet when none was written."""
    try:
        response = s3.get_object(bucket, sheet_key(uid))
    except MissingOrError as exc:
        if is_not_found(exc):
            return JobSheet()
        raise
    try:
        return JobSheet.from_data(json.loads(response.read()))
    finally:
        response.close()
        response.release_conn()


def write_sheet(s3: Minio, bucket: str, sheet: JobSheet) -> None:
    """Persist ``sheet`` (it holds no secrets) at ``jobsheets/<uid>.json``."""
    data = json.dumps(sheet.to_data(), indent=2, sort_keys=True).encode()
    s3.put_object(
        bucket, sheet_key(sheet.uid), io.BytesIO(data), len(data), content_type="application/json"
    )


def list_sheet_uids(s3: Minio, bucket: str) -> list[str]:
    """The uids of every persisted sheet."""
    uids = []
    for obj in s3.list_objects(bucket, prefix="jobsheets/"):
        name = obj.object_name or ""
        if name.endswith(".json"):
            uids.append(name.removeprefix("jobsheets/").removesuffix(".json"))
    return uids
