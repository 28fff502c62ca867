"""The storage side of a job: PARs for the object store, input checks, persistence and clean-up.

Only these activities (and the PAR gateway) hold storage credentials. Every one is idempotent:
presigning is pure, puts overwrite the same key with the same bytes, deletes of missing objects
succeed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from pydantic import BaseModel, Field
from temporalio import activity

from jobsheet.compute.config import ComputeConfig, load_compute_config
from jobsheet.compute.models import OutputObject
from jobsheet.jobs.messages import JobConfig, JobPolicyInput
from jobsheet.jobs.models import JobSheet, ParKind, ParMetadata, output_prefix, staging_prefix
from jobsheet.jobs.store import write_sheet
from jobsheet.objectstore import compute_presign_client, internal_client, presign_client
from jobsheet.settings import Settings
from jobsheet.write_par import MAX_URL_SECONDS, WritePar, issue_write_par

log = logging.getLogger("jobsheet.storage")
NOT_FOUND_CODES = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")

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
    url_seconds: int = Field(default=MAX_URL_SECONDS, gt=0, le=MAX_URL_SECONDS)
    """The longest a presigned PUT granted for it may live."""


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


class SealOutputsInput(BaseModel):
    """Copy a run's outputs from the staging prefix to the output prefix, checking each."""

    job_uid: str
    outputs: list[OutputObject]


class SealedOutputs(BaseModel):
    outputs: list[OutputObject]
    """The sealed outputs, under the output prefix, each matching the run's report."""
    discarded: list[str] = Field(default_factory=list)
    """The staged keys that were missing, outside the staging prefix, or no longer matched."""


def policy_refusal(config: ComputeConfig, *, service: str, calculation: str) -> str:
    """Why ``calculation`` on ``service`` cannot be contracted, naming what exists; or ""."""
    if service not in config.services:
        known = ", ".join(sorted(config.services)) or "none"
        return f"UnknownService: there is no compute service {service!r}; known services: {known}"
    if not calculation:
        return ""
    found = config.calculations.get(calculation)
    if found is None:
        known = ", ".join(sorted(c.name for c in config.offered_by(service))) or "none"
        return (
            f"UnknownCalculation: there is no calculation {calculation!r}; "
            f"service {service!r} offers: {known}"
        )
    if service not in found.services:
        return (
            f"UnknownCalculation: service {service!r} does not offer {calculation!r}; "
            f"it runs on: {', '.join(sorted(found.services))}"
        )
    return ""


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
        """The operator's policy for a new job, from this (trusted) worker's settings.

        The service and calculation are checked against the operator's calculations file (the
        one the compute workers serve), so an unknown one is refused at once, naming what
        exists, instead of waiting for a compute queue nobody polls.
        """
        settings = self._settings
        refusal = ""
        try:
            config = load_compute_config(settings.calculations_file)
        except (OSError, ValueError) as exc:
            log.warning(
                "cannot check the calculation against %s: %s", settings.calculations_file, exc
            )
        else:
            refusal = policy_refusal(
                config, service=request.service, calculation=request.calculation
            )
        return JobConfig(
            ledger_task_queue=settings.task_queue_ledger,
            compute_task_queue=settings.compute_task_queue(request.service),
            provider_account=settings.provider_account,
            gateway_url=settings.api_url,
            expiry_seconds=settings.job_expiry_seconds,
            download_par_seconds=settings.download_par_seconds,
            retention_seconds=settings.retention_seconds,
            search_attributes=settings.job_search_attributes,
            write_url_seconds=settings.write_url_seconds,
            refusal=refusal,
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
            url_seconds=request.url_seconds,
        )

    @activity.defn
    def check_input(self, request: CheckInputInput) -> InputCheck:
        """Does the uploaded input exist and match the promised size and sha256?"""
        size = self._size(request.key)
        if size is None:
            return InputCheck(ok=False, problem="no input has been uploaded yet")
        if size != request.size:
            return InputCheck(
                ok=False,
                size=size,
                problem=f"the input is {size} bytes but the request promised {request.size}",
            )
        digest = self._sha256(request.key)
        if digest != request.sha256:
            return InputCheck(
                ok=False,
                size=size,
                problem=(
                    f"the input's sha256 is {digest} but the request promised {request.sha256}"
                ),
            )
        return InputCheck(ok=True, size=size)

    def _size(self, key: str) -> int | None:
        """The object's size, or None when there is no such object."""
        try:
            return int(self._s3.stat_object(self._bucket, key).size or 0)
        except S3Error as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise

    def _sha256(self, key: str) -> str:
        """The sha256 (hex) of an object's bytes, read in 1 MiB chunks with heartbeats."""
        digest = hashlib.sha256()
        response = self._s3.get_object(self._bucket, key)
        try:
            for n, chunk in enumerate(response.stream(1 << 20)):
                digest.update(chunk)
                if n % 64 == 0:
                    activity.heartbeat(n)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest()

    def _matches(self, key: str, output: OutputObject) -> bool:
        """Does the object at ``key`` hold exactly the bytes the run reported for ``output``?"""
        size = self._size(key)
        return size == output.size and self._sha256(key) == output.sha256

    @activity.defn
    def seal_outputs(self, request: SealOutputsInput) -> SealedOutputs:
        """Copy each staged output to the output prefix, where no PAR can write, keeping only
        copies whose bytes match the run's report (size and sha256).

        The bucket-write PAR covers the staging prefix only, and a presigned PUT it granted may
        outlive the job by up to 15 minutes; what the owner downloads is the sealed copy, so a
        late write cannot change it. Idempotent: a retry keeps a copy that already matches.
        """
        staging, sealed = staging_prefix(request.job_uid), output_prefix(request.job_uid)
        kept: list[OutputObject] = []
        discarded: list[str] = []
        for n, output in enumerate(request.outputs):
            activity.heartbeat(n)
            if not output.key.startswith(staging):
                discarded.append(output.key)
                continue
            target = sealed + output.key.removeprefix(staging)
            if not self._matches(target, output):
                try:
                    self._s3.copy_object(self._bucket, target, CopySource(self._bucket, output.key))
                except S3Error as exc:
                    if exc.code not in NOT_FOUND_CODES:
                        raise
                    discarded.append(output.key)
                    continue
                if not self._matches(target, output):
                    self._s3.remove_object(self._bucket, target)
                    discarded.append(output.key)
                    continue
            kept.append(output.model_copy(update={"key": target}))
        return SealedOutputs(outputs=kept, discarded=discarded)

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
            self.seal_outputs,
        ]

    @activity.defn
    def persist_sheet(self, request: PersistSheetInput) -> None:
        """Write the job sheet to ``jobsheets/<uid>.json`` (it holds no secrets). The API reads
        it back: a bucket-write PAR is honoured only while this says ``running``."""
        write_sheet(self._s3, self._bucket, request.sheet)
