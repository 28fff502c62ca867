"""The bodies of the public API (``/v1``): what a user sends and what the API answers.

The SDK sends and parses exactly these models, and FastAPI publishes them in ``/openapi.json``;
every refusal is an :class:`ApiError`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from jobsheet.compute.models import RunProgress
from jobsheet.core.money import NonNegativeMoney
from jobsheet.core.names import Name
from jobsheet.identity.authorisation import Authorisation
from jobsheet.identity.keys import PUBLIC_KEY_BYTES, PublicKeyRecord, strict_b64decode
from jobsheet.identity.models import RegisterKeyInput, RevokeKeyInput
from jobsheet.jobs.models import JobRequest, JobState
from jobsheet.ledger.cheque import Cheque
from jobsheet.ledger.models import BalanceView, LedgerEntry

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


class ApiError(BaseModel):
    """Every refusal: ``error`` is a short name to act on, ``message`` one readable sentence."""

    error: str
    message: str


def strict_public_key(value: str) -> str:
    """A raw Ed25519 public key in canonical base64 (exactly 32 bytes, one spelling)."""
    try:
        strict_b64decode(value, size=PUBLIC_KEY_BYTES)
    except ValueError:
        raise ValueError(
            "public_key must be canonical base64 of the 32 raw bytes of an Ed25519 key"
        ) from None
    return value


class SignupRequest(BaseModel):
    """Open self-service sign-up: a name and the public half of the user's first key."""

    name: Name
    public_key: str = Field(description="base64 of the raw 32-byte Ed25519 public key")

    _key = field_validator("public_key")(strict_public_key)


class AddKeyRequest(RegisterKeyInput):
    """The signed order to register another key of ``user`` (``retire_others`` makes it a
    rotation: older keys stop signing), made by ``jobsheet.identity.key_orders.sign_add_key``
    with a current key of that user, whose registry verifies it."""

    @field_validator("key")
    @classmethod
    def _strict_key(cls, key: PublicKeyRecord) -> PublicKeyRecord:
        strict_public_key(key.public_key)
        return key


class RevokeKeyRequest(RevokeKeyInput):
    """The signed order to revoke ``user``'s key ``key_id``, made by
    ``jobsheet.identity.key_orders.sign_revoke_key`` with a current key of that user or of the
    operator, and verified by the user's registry."""


class UserView(BaseModel):
    user: str
    keys: list[PublicKeyRecord]


class OpenAccountRequest(BaseModel):
    """Open an account owned by the caller (a new uid unless ``account`` names one)."""

    account: Name | None = None


class CalculationView(BaseModel):
    """A calculation the operator offers: what it takes and the most it can cost."""

    name: str
    description: str
    services: list[str]
    parameters: dict[str, Any] = Field(description="JSON schema of the parameters")
    reads_input: bool
    price_per_second: NonNegativeMoney
    fee: NonNegativeMoney
    max_runtime_seconds: int
    quote: NonNegativeMoney = Field(description="the most one run can cost: the amount held")


class CalculationList(BaseModel):
    calculations: list[CalculationView]
    payee: str = Field(description="the account every cheque must name as its recipient")


class SubmitRequest(BaseModel):
    """A job request with the caller's authorisation and cheque for its fingerprint."""

    request: JobRequest
    authorisation: Authorisation
    cheque: Cheque


class SubmitAnswer(BaseModel):
    """The job's PARs: upload the input, then POST the run PAR, both before ``expires_at``."""

    uid: str
    state: JobState
    upload_url: str
    run_url: str
    expires_at: AwareDatetime
    held: NonNegativeMoney = Decimal("0.00")


class JobSummary(BaseModel):
    """One line of a job listing."""

    uid: str
    state: JobState | None
    account: str = ""
    user: str = ""
    calculation: str = ""
    submitted_at: datetime | None = None
    source: str = "temporal"
    """Where the line came from: ``temporal`` (visibility) or ``store`` (a persisted sheet)."""


class JobList(BaseModel):
    jobs: list[JobSummary]


class CancelRequest(BaseModel):
    """The owner's authorisation for ``cancel:<uid>`` and a reason for the record."""

    authorisation: Authorisation
    reason: str = Field(default="cancelled by the owner", max_length=500)


class WatchEvent(BaseModel):
    """One Server-Sent Event of ``GET /v1/jobs/{uid}/events``."""

    kind: Literal["state", "progress"]
    uid: str
    state: JobState
    at: datetime | None = None
    note: str = ""
    progress: RunProgress | None = None


class StatementLine(BaseModel):
    """One ledger entry, with the job it belongs to (empty for deposits)."""

    entry: LedgerEntry
    job_uid: str = ""


class StatementView(BaseModel):
    balance: BalanceView
    lines: list[StatementLine]


class Health(BaseModel):
    ok: bool
