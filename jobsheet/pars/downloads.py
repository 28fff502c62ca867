"""Download PARs for an ended job's outputs, presigned from its final sheet on request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from minio import Minio

from jobsheet.jobs.messages import DownloadPar, DownloadPars
from jobsheet.jobs.models import JobSheet


class OutputsGone(Exception):
    """The outputs' retention ended: they were deleted."""


class NoOutputs(Exception):
    """The job kept no outputs."""


def presign_downloads(
    presigner: Minio, bucket: str, sheet: JobSheet, *, max_seconds: int, now: datetime | None = None
) -> DownloadPars:
    """One presigned GET per output, living ``max_seconds`` at most and never past the
    outputs' retention."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    until = sheet.outputs_retained_until
    if sheet.outputs_deleted or (until is not None and until <= now + timedelta(seconds=1)):
        raise OutputsGone("the outputs' retention ended; they were deleted")
    if not sheet.outputs or until is None:
        raise NoOutputs("this job has no outputs to download")
    lifetime = min(timedelta(seconds=max_seconds), until - now)
    pars = [
        DownloadPar(
            key=output.key,
            size=output.size,
            sha256=output.sha256,
            url=presigner.presigned_get_object(bucket, output.key, expires=lifetime),
            expires_at=now + lifetime,
        )
        for output in sheet.outputs
    ]
    return DownloadPars(uid=sheet.uid, pars=pars)
