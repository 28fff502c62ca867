"""Inputs and results of the job sheet workflow, its updates and its queries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from jobsheet.authorisation import Authorisation
from jobsheet.cheque import Cheque
from jobsheet.jobs.models import JobRequest, JobSheet, JobState
from jobsheet.money import NonNegativeMoney


class JobConfig(BaseModel):
    """The operator's policy for a job, fixed at submission.

    The workflow asks the jobs worker for it (the ``job_policy`` activity) instead of taking it
    from the submitter, so a user cannot choose who is paid, which ledger or compute queue is
    used, or how long the job and its outputs live.
    """

    ledger_task_queue: str
    compute_task_queue: str
    provider_account: str
    gateway_url: str
    expiry_seconds: int = Field(default=3600, gt=0)
    download_par_seconds: int = Field(default=24 * 3600, gt=0, le=7 * 24 * 3600)
    retention_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    run_heartbeat_seconds: int = Field(default=10, gt=0)
    search_attributes: bool = True
    """Upsert the JobState search attribute (off where the server has no such attribute)."""
    write_url_seconds: int = Field(default=15 * 60, gt=0, le=15 * 60)
    """The longest a presigned PUT granted for the bucket-write PAR lives (signed into the PAR),
    so the workflow knows when no late write can land any more."""
    refusal: str = ""
    """Why the operator refuses this job before anything is done, as ``"Type: message"``
    (an unknown service or calculation); empty when the job may go ahead."""


class JobStart(BaseModel):
    """The workflow's input: a submission, or (``carried``) a sheet continued as new."""

    uid: str
    request: JobRequest
    authorisation: Authorisation
    cheque: Cheque
    carried: JobSheet | None = None
    carried_config: JobConfig | None = None
    """The policy fetched at submission, carried only across continue-as-new."""
    carried_sweep_at: datetime | None = None
    """When the job's storage is swept once more (no write PAR can write after it), carried
    across continue-as-new."""


class JobPolicyInput(BaseModel):
    service: str
    calculation: str = ""
    """Checked against the operator's calculations file (empty: not checked)."""


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


class DownloadParsInput(BaseModel):
    """Ask for download PARs for the outputs (fresh ones when the earlier ones are stale)."""


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
