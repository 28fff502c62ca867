"""The storage side of a job that can take long: checking the uploaded input, sealing the
outputs, deleting a prefix (regular activities, heartbeating where they read whole objects).

The quick steps (presigning, persisting the sheet) are local activities in ``activities/jobs.py``.
Every one is idempotent: copies are checked, deletes of missing objects succeed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from minio import Minio
from minio.commonconfig import CopySource
from pydantic import BaseModel, Field
from temporalio import activity

from jobsheet.compute.models import OutputObject
from jobsheet.core.objectstore import MissingOrError, internal_client, is_not_found
from jobsheet.core.settings import MAX_PAR_SECONDS, Settings
from jobsheet.jobs.models import output_prefix, staging_prefix

log = logging.getLogger("jobsheet.storage")

# S3 SigV4 presigned URLs live at least a second and at most seven days.
MIN_PAR_SECONDS = 1


class CheckInputInput(BaseModel):
    key: str
    size: int
    sha256: str


class InputCheck(BaseModel):
    ok: bool
    problem: str = ""
    size: int | None = None


class SealOutputsInput(BaseModel):
    """Copy a run's outputs from the staging prefix to the output prefix, checking each."""

    job_uid: str
    outputs: list[OutputObject]


class SealedOutputs(BaseModel):
    outputs: list[OutputObject]
    """The sealed outputs, under the output prefix, each matching the run's report."""
    discarded: list[str] = Field(default_factory=list)
    """The staged keys that were missing, outside the staging prefix, or no longer matched."""


def par_lifetime(now: datetime, expires_at: datetime) -> timedelta:
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
        except MissingOrError as exc:
            if is_not_found(exc):
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
                except MissingOrError as exc:
                    if not is_not_found(exc):
                        raise
                    discarded.append(output.key)
                    continue
                if not self._matches(target, output):
                    self._s3.remove_object(self._bucket, target)
                    discarded.append(output.key)
                    continue
            kept.append(output.model_copy(update={"key": target}))
        return SealedOutputs(outputs=kept, discarded=discarded)

    def all(self) -> list[Callable[..., Any]]:
        """Every storage activity, for a worker's ``activities=``."""
        return [
            self.check_input,
            self.seal_outputs,
        ]
