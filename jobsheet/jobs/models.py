"""The job sheet and the models that cross its workflow's boundaries.

A job sheet never holds a secret: PARs are recorded as metadata (kind, key or prefix, expiry),
never as URLs or tokens, so the sheet can be persisted, shown and queried freely.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobsheet.compute.models import OutputObject, RunProgress, Usage
from jobsheet.core.canonical import fingerprint
from jobsheet.core.money import NonNegativeMoney
from jobsheet.core.names import Name
from jobsheet.identity.authorisation import Authorisation
from jobsheet.identity.keys import signature_bytes
from jobsheet.ledger.models import CreditNote


class JobState(StrEnum):
    """Where a job is. The last five are terminal: a job ends in exactly one of them."""

    SUBMITTED = "submitted"
    AWAITING_UPLOAD = "awaiting_upload"
    RUNNING = "running"
    SETTLING = "settling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.TIMED_OUT,
        JobState.EXPIRED,
        JobState.CANCELLED,
        JobState.REJECTED,
    }
)


class JobRequest(BaseModel):
    """What the user asks for. Its fingerprint is the resource the authorisation and cheque name."""

    model_config = ConfigDict(frozen=True)

    calculation: str = Field(min_length=1, max_length=100)
    service: str = Field(default="standard", min_length=1, max_length=100)
    parameters: dict[str, Any] = Field(default_factory=dict)
    input_size: int = Field(ge=0, le=1 << 40, description="promised size of the input in bytes")
    input_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="promised sha256 of the input")
    account: Name = Field(description="the paying account")
    user: Name = Field(description="who asks and signs")

    def fingerprint(self) -> str:
        return fingerprint(self)


def job_uid_for(signature: str) -> str:
    """The job uid, derived from the authorisation's signature *bytes*, so one authorisation is
    one job whatever spelling of its base64 a replay uses (a non-canonical spelling is refused by
    :func:`jobsheet.identity.keys.signature_bytes`, here and wherever signatures are checked). An
    unsigned authorisation (empty signature) has one uid, and its job is rejected."""
    raw = signature_bytes(signature) if signature else b""
    return "job-" + hashlib.sha256(raw).hexdigest()[:32]


class ParKind(StrEnum):
    UPLOAD = "upload"
    BUCKET_WRITE = "bucket_write"
    RUN = "run"
    READ_INPUT = "read_input"
    DOWNLOAD = "download"


class ParMetadata(BaseModel):
    """What a PAR allowed and until when; never the URL or token itself."""

    kind: ParKind
    target: str = Field(description="the object key, prefix or job the PAR is for")
    issued_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None
    token_sha256: str | None = None
    """For the run PAR: the sha256 of its token (hex), so the API can refuse a wrong token
    without asking the job. A digest of 256 random bits reveals nothing of the token."""


class TimelineEntry(BaseModel):
    state: JobState
    at: datetime
    note: str = ""


class JobCosts(BaseModel):
    quoted: NonNegativeMoney = Decimal("0.00")
    held: NonNegativeMoney = Decimal("0.00")
    charged: NonNegativeMoney = Decimal("0.00")
    refunded: NonNegativeMoney = Decimal("0.00")


class ContractSummary(BaseModel):
    """The compute contract as the sheet records it: everything but the run token."""

    contract_id: str
    service: str
    task_queue: str
    calculation: str
    price_per_second: NonNegativeMoney
    fee: NonNegativeMoney
    quote: NonNegativeMoney
    max_runtime_seconds: int
    run_by: datetime
    deadline: datetime
    released: bool = False


class JobSheet(BaseModel):
    """The complete record of one job."""

    uid: str = ""
    request: JobRequest | None = None
    authorisation: Authorisation | None = None
    state: JobState = JobState.SUBMITTED
    expires_at: datetime | None = None
    credit_notes: list[CreditNote] = Field(default_factory=list)
    contract: ContractSummary | None = None
    pars: list[ParMetadata] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    costs: JobCosts = Field(default_factory=JobCosts)
    outputs: list[OutputObject] = Field(default_factory=list)
    outputs_retained_until: datetime | None = None
    outputs_deleted: bool = False
    outputs_discarded: list[str] = Field(default_factory=list)
    """Outputs the run reported whose stored bytes no longer matched its report when the job
    settled (changed through the bucket-write PAR after the run wrote them): not kept."""
    progress: RunProgress | None = None
    usage: Usage | None = None
    run_status: str | None = None
    exit_status: int | None = None
    stderr_tail: str = ""
    error: str | None = None

    def is_null(self) -> bool:
        """True for an empty sheet (no job behind it)."""
        return not self.uid

    def to_data(self) -> dict[str, Any]:
        """The sheet as JSON-ready data."""
        return self.model_dump(mode="json")

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> JobSheet:
        """The sheet from :meth:`to_data` output; an empty sheet from None or {}."""
        if not data:
            return cls()
        return cls.model_validate(data)

    @property
    def terminal(self) -> bool:
        return self.state.terminal


def sheet_key(uid: str) -> str:
    """Where a job sheet is persisted in the bucket."""
    return f"jobsheets/{uid}.json"


def job_prefix(uid: str) -> str:
    """Everything stored for one job (input and outputs) lives under this prefix."""
    return f"jobs/{uid}/"


def input_key(uid: str) -> str:
    return f"jobs/{uid}/input"


def output_prefix(uid: str) -> str:
    """Where the outputs the owner downloads live: sealed at settlement, where no PAR writes."""
    return f"jobs/{uid}/output/"


def staging_prefix(uid: str) -> str:
    """Where the compute service writes outputs through the bucket-write PAR while the job
    runs; settlement copies them (checked) to :func:`output_prefix` and deletes these."""
    return f"jobs/{uid}/staging/"
