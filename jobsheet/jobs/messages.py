"""Inputs and results of the job sheet workflow, its updates and its queries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from jobsheet.compute.models import ComputeContract
from jobsheet.core.money import NonNegativeMoney
from jobsheet.core.settings import (
    DOWNLOAD_PAR_SECONDS,
    JOB_EXPIRY_SECONDS,
    MAX_PAR_SECONDS,
    RETENTION_SECONDS,
    WRITE_URL_SECONDS,
)
from jobsheet.identity.authorisation import Authorisation
from jobsheet.jobs.cleanup import Cleanup
from jobsheet.jobs.models import JobRequest, JobSheet, JobState, ParMetadata
from jobsheet.ledger.cheque import Cheque
from jobsheet.pars.write import WritePar


class JobConfig(BaseModel):
    """The operator's policy for a job, fixed at submission.

    The workflow asks the jobs worker for it (the ``prepare_job`` step) instead of taking it
    from the submitter, so a user cannot choose who is paid, which ledger or compute queue is
    used, or how long the job and its outputs live.
    """

    ledger_task_queue: str
    compute_task_queue: str
    provider_account: str
    gateway_url: str
    expiry_seconds: int = Field(default=JOB_EXPIRY_SECONDS, gt=0)
    download_par_seconds: int = Field(default=DOWNLOAD_PAR_SECONDS, gt=0, le=MAX_PAR_SECONDS)
    retention_seconds: int = Field(default=RETENTION_SECONDS, ge=0)
    run_heartbeat_seconds: int = Field(default=10, gt=0)
    search_attributes: bool = True
    """Upsert the JobState search attribute (off where the server has no such attribute)."""
    write_url_seconds: int = Field(default=WRITE_URL_SECONDS, gt=0, le=WRITE_URL_SECONDS)
    """The longest a presigned PUT granted for the bucket-write PAR lives (signed into the PAR),
    so the workflow knows when no late write can land any more."""


class JobStart(BaseModel):
    """The workflow's input: one submission."""

    uid: str
    request: JobRequest
    authorisation: Authorisation
    cheque: Cheque


class PrepareInput(BaseModel):
    """Check a submission against the operator's policy and the user's keys; draft its contract."""

    uid: str
    request: JobRequest
    authorisation: Authorisation
    now: datetime | None = None
    """The workflow's clock, which the job's deadlines are counted from (its timers run on it)."""


class Prepared(BaseModel):
    """The operator's policy for the job and the compute contract drafted for it (not yet held)."""

    policy: JobConfig
    contract: ComputeContract
    max_open_contracts: int = Field(ge=1)
    """The service's capacity, for the contract book."""


class ReserveInput(BaseModel):
    contract: ComputeContract
    max_open_contracts: int = Field(ge=1)


class ReleaseInput(BaseModel):
    contract_id: str
    task_queue: str
    """The compute service's task queue (its contract book's id)."""


class SubmissionParsInput(BaseModel):
    """The PARs a paid job hands out: an upload PAR until ``upload_until`` and the bucket-write
    PAR for ``write_prefix`` until ``write_until``."""

    uid: str
    write_prefix: str
    write_until: datetime
    upload_until: datetime
    url_seconds: int = Field(gt=0)


class IssuedPar(BaseModel):
    """A PAR: the URL to hand over once, and the metadata the job sheet keeps."""

    url: str
    metadata: ParMetadata


class SubmissionPars(BaseModel):
    write_par: WritePar
    upload: IssuedPar
    issued_at: datetime


class StartRunInput(BaseModel):
    """Persist the running sheet (the API honours the write PAR from here) and presign the
    compute service's read of the input until ``input_until``."""

    sheet: JobSheet
    input_until: datetime


class FinishInput(BaseModel):
    """Persist the ended sheet, delete what it does not keep, and leave the later clean-ups."""

    sheet: JobSheet
    cleanups: list[Cleanup] = Field(default_factory=list)


class SubmitInput(BaseModel):
    """The update that returns the PARs once the job is paid for and its services are ready."""


class SubmitResult(BaseModel):
    uid: str
    state: JobState
    upload_url: str
    run_url: str
    expires_at: datetime
    held: NonNegativeMoney = Decimal("0.00")


class TriggerRunInput(BaseModel):
    token: str


class TriggerRunResult(BaseModel):
    uid: str
    state: JobState
    started: bool
    message: str


class CancelInput(BaseModel):
    """Cancel the job; ``authorisation`` is the owner's, for the resource ``cancel:<uid>``."""

    authorisation: Authorisation
    reason: str = "cancelled by the owner"


class DownloadPar(BaseModel):
    key: str
    size: int
    sha256: str
    url: str
    expires_at: datetime


class DownloadPars(BaseModel):
    uid: str
    pars: list[DownloadPar]


def cancel_resource(uid: str) -> str:
    """What an owner's authorisation must name to cancel job ``uid``."""
    return f"cancel:{uid}"


def run_par_url(gateway_url: str, uid: str, token: str) -> str:
    """The run PAR: a URL that triggers the run when POSTed to, with no other credential."""
    return f"{gateway_url.rstrip('/')}/par/run/{uid}/{token}"
