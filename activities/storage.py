"""The storage side of a job: PARs for the object store, input checks, persistence and clean-up.

Only these activities (and the PAR gateway) hold storage credentials. Every one is idempotent:
presigning is pure, puts overwrite the same key with the same bytes, deletes of missing objects
succeed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from pydantic import BaseModel
from temporalio import activity

from jobsheet.jobs.messages import JobConfig, JobPolicyInput
from jobsheet.jobs.models import JobSheet, ParKind, ParMetadata, sheet_key
from jobsheet.objectstore import compute_presign_client, internal_client, presign_client
from jobsheet.settings import Settings
from jobsheet.write_par import WritePar, issue_write_par

# S3 SigV4 presigned URLs live at least a second and at most seven days.
MIN_PAR_SECONDS = 1
MAX_PAR_SECONDS = 7 * 24 * 3600


class IssueObjectParInput(BaseModel):
    """A presigned URL for one object, valid from ``now`` until ``expires_at``."""

    kind: ParKind
    key: str
    now: datetime
    expires_at: datetime


class IssuedPar(BaseModel):
    """A PAR: the URL to hand over once, and the metadata the job sheet keeps."""

    url: str
    metadata: ParMetadata


class IssueWriteParInput(BaseModel):
    """A bucket-write PAR for the job's output prefix, until ``expires_at``."""

    job_uid: str
    prefix: str
    expires_at: datetime


class CheckInputInput(BaseModel):
    key: str
    size: int
    sha256: str


class InputCheck(BaseModel):
    ok: bool
    problem: str = ""
    size: int | None = None


class DeleteObjectsInput(BaseModel):
    prefix: str


class DeleteObjectsResult(BaseModel):
    deleted: int


class PersistSheetInput(BaseModel):
    sheet: JobSheet


def _lifetime(now: datetime, expires_at: datetime) -> timedelta:
    seconds = int((expires_at - now).total_seconds())
    if seconds < MIN_PAR_SECONDS:
        raise ValueError(f"a PAR expiring at {expires_at.isoformat()} has already expired")
    return timedelta(seconds=min(seconds, MAX_PAR_SECONDS))


class StorageActivities:
    """Storage activities bound to one deployment's settings (bucket, endpoints, credentials)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._bucket = settings.bucket
        self._s3: Minio = internal_client(settings)
        self._signer: Minio = presign_client(settings)
        self._compute_signer: Minio = compute_presign_client(settings)

    @activity.defn
    def job_policy(self, request: JobPolicyInput) -> JobConfig:
        """The operator's policy for a new job, from this (trusted) worker's settings."""
        settings = self._settings
        return JobConfig(
            ledger_task_queue=settings.task_queue_ledger,
            compute_task_queue=settings.compute_task_queue(request.service),
            provider_account=settings.provider_account,
            gateway_url=settings.api_url,
            expiry_seconds=settings.job_expiry_seconds,
            download_par_seconds=settings.download_par_seconds,
            retention_seconds=settings.retention_seconds,
            search_attributes=settings.job_search_attributes,
        )

    @activity.defn
    def issue_object_par(self, request: IssueObjectParInput) -> IssuedPar:
        """Presign a PUT (upload) or GET (download, read input) for exactly one object."""
        lifetime = _lifetime(request.now, request.expires_at)
        if request.kind == ParKind.UPLOAD:
            url = self._signer.presigned_put_object(self._bucket, request.key, expires=lifetime)
        elif request.kind == ParKind.DOWNLOAD:
            url = self._signer.presigned_get_object(self._bucket, request.key, expires=lifetime)
        elif request.kind == ParKind.READ_INPUT:
            url = self._compute_signer.presigned_get_object(
                self._bucket, request.key, expires=lifetime
            )
        else:
            raise ValueError(f"{request.kind} is not a single-object PAR")
        return IssuedPar(
            url=url,
            metadata=ParMetadata(
                kind=request.kind,
                target=request.key,
                issued_at=request.now,
                expires_at=request.now + lifetime,
            ),
        )

    @activity.defn
    def issue_bucket_write_par(self, request: IssueWriteParInput) -> WritePar:
        """Sign the capability that lets compute write under the output prefix and nowhere else."""
        return issue_write_par(
            self._settings,
            job_uid=request.job_uid,
            prefix=request.prefix,
            expires_at=request.expires_at,
        )

    @activity.defn
    def check_input(self, request: CheckInputInput) -> InputCheck:
        """Does the uploaded input exist and match the promised size and sha256?"""
        try:
            stat = self._s3.stat_object(self._bucket, request.key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return InputCheck(ok=False, problem="no input has been uploaded yet")
            raise
        size = int(stat.size or 0)
        if size != request.size:
            return InputCheck(
                ok=False,
                size=size,
                problem=f"the input is {size} bytes but the request promised {request.size}",
            )
        digest = hashlib.sha256()
        response = self._s3.get_object(self._bucket, request.key)
        try:
            for n, chunk in enumerate(response.stream(1 << 20)):
                digest.update(chunk)
                if n % 64 == 0:
                    activity.heartbeat(n)
        finally:
            response.close()
            response.release_conn()
        if digest.hexdigest() != request.sha256:
            return InputCheck(
                ok=False,
                size=size,
                problem=(
                    f"the input's sha256 is {digest.hexdigest()} but the request promised "
                    f"{request.sha256}"
                ),
            )
        return InputCheck(ok=True, size=size)

    @activity.defn
    def delete_objects(self, request: DeleteObjectsInput) -> DeleteObjectsResult:
        """Delete every object under a prefix (or the one key equal to it); idempotent."""
        if not request.prefix or request.prefix in ("/", "jobs/", "jobsheets/"):
            raise ValueError(f"refusing to delete the broad prefix {request.prefix!r}")
        names = [
            obj.object_name
            for obj in self._s3.list_objects(self._bucket, prefix=request.prefix, recursive=True)
            if obj.object_name
        ]
        errors = list(self._s3.remove_objects(self._bucket, [DeleteObject(n) for n in names]))
        if errors:
            raise RuntimeError(f"could not delete {len(errors)} objects: {errors[0]}")
        return DeleteObjectsResult(deleted=len(names))

    def all(self) -> list[Callable[..., Any]]:
        """Every storage activity, for a worker's ``activities=``."""
        return [
            self.job_policy,
            self.issue_object_par,
            self.issue_bucket_write_par,
            self.check_input,
            self.delete_objects,
            self.persist_sheet,
        ]

    @activity.defn
    def persist_sheet(self, request: PersistSheetInput) -> None:
        """Write the job sheet to ``jobsheets/<uid>.json`` (it holds no secrets)."""
        data = json.dumps(request.sheet.to_data(), indent=2, sort_keys=True).encode()
        self._s3.put_object(
            self._bucket,
            sheet_key(request.sheet.uid),
            io.BytesIO(data),
            len(data),
            content_type="application/json",
        )
