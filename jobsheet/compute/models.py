"""What crosses the compute service's boundary: contracts, run requests, results and progress."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from jobsheet.core.money import NonNegativeMoney
from jobsheet.pars.read import ReadPar
from jobsheet.pars.write import WritePar


class ComputeContract(BaseModel):
    """A compute service's promise to run a calculation for a job at a quoted maximum price."""

    model_config = ConfigDict(frozen=True)

    contract_id: str
    job_uid: str
    service: str
    task_queue: str
    calculation: str
    parameters: dict[str, Any]
    price_per_second: NonNegativeMoney
    fee: NonNegativeMoney
    quote: NonNegativeMoney
    """The most the run can cost: fee + price per second x max runtime."""
    max_runtime_seconds: int
    max_output_bytes: int
    run_by: AwareDatetime
    deadline: AwareDatetime
    """The slot is held until here: run_by + max runtime + grace for retries and uploads."""
    run_token: str
    """The secret (>= 256 bits) behind the run PAR the job sheet hands the user."""
    created_at: AwareDatetime


class ContractState(StrEnum):
    HELD = "held"
    RELEASED = "released"
    EXPIRED = "expired"


class ContractRecord(BaseModel):
    """A contract as its workflow (or a book's records) keeps it."""

    contract: ComputeContract
    state: ContractState = ContractState.HELD
    ended_at: datetime | None = None

    def state_at(self, now: datetime) -> ContractState:
        """The state as of ``now``: a held contract past its deadline is expired, even before
        its timer is handled (a burst of deadlines can keep a worker busy for a while)."""
        if self.state == ContractState.HELD and self.contract.deadline <= now:
            return ContractState.EXPIRED
        return self.state


class ContractStart(BaseModel):
    """The input of a contract's own workflow: the contract it holds and the book it reports to."""

    contract: ComputeContract
    book_id: str
    """The workflow id of the service's contract book, signalled when the contract ends."""


class ContractEnded(BaseModel):
    """The contract book's ``contract_ended`` signal: one of its contracts ended, a slot is free."""

    contract_id: str
    state: ContractState


RUN_ACTIVITY = "run_calculation"
"""The compute workers' run activity, declared once: it heartbeats a :class:`RunProgress`, which
a job's reader finds among the job workflow's pending activities by this name."""

CONTRACT_ENDED_SIGNAL = "contract_ended"
"""The book's signal, declared once: the contract workflow sends it, the book handles it."""

SERVICE_AT_CAPACITY = "ServiceAtCapacity"
"""A refusal: the service holds its maximum of open contracts (``max_open_contracts``)."""
ALREADY_RESERVED = "ContractAlreadyReserved"
"""The book's answer to a contract it started before: ask the contract's workflow for it."""
BOOK_ROLLING = "ContractBookRolling"
"""The book is about to continue as new and takes no reservation now: send it again shortly."""


def capacity_refusal(service: str, capacity: int) -> str:
    """What a full service says: its name, its capacity, and what to do."""
    contracts = "contract" if capacity == 1 else "contracts"
    return (
        f"compute service {service!r} is full: it holds its maximum of {capacity} open "
        f"{contracts} (max_open_contracts); submit again when one of its jobs has ended"
    )


class ReleaseRequest(BaseModel):
    contract_id: str


class ReleaseResult(BaseModel):
    contract_id: str
    released_now: bool
    """True only for the call that released it; a repeated release is harmless and says False."""
    state: ContractState | None
    """None when the service never held such a contract."""


class RunRequest(BaseModel):
    """Run a contracted calculation: read the input through one PAR, write outputs through another."""

    contract: ComputeContract
    input: ReadPar
    output: WritePar
    input_name: str = Field(default="input", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    """The file name the program sees its input under (inside the run's input directory)."""


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OUTPUT_TOO_LARGE = "output_too_large"
    INPUT_MISSING = "input_missing"


class Usage(BaseModel):
    wall_seconds: float = Field(ge=0)
    cpu_seconds: float = Field(ge=0)


class OutputObject(BaseModel):
    """One object written under the job's output prefix."""

    key: str
    size: int = Field(ge=0)
    sha256: str
    kind: Literal["stdout", "stderr", "file"]


class RunResult(BaseModel):
    """How a run ended, what it used and what it wrote."""

    contract_id: str
    status: RunStatus
    exit_code: int | None = None
    """The program's exit status, or None when a signal ended it."""
    signal: int | None = None
    usage: Usage
    stderr_tail: str = ""
    outputs: list[OutputObject] = Field(default_factory=list)
    skipped_outputs: list[str] = Field(default_factory=list)
    """Files in the output directory whose names cannot be object keys (not uploaded)."""
    attempt: int = 1


class RunPhase(StrEnum):
    WAITING = "waiting"
    DOWNLOADING = "downloading"
    RUNNING = "running"
    UPLOADING = "uploading"


class RunProgress(BaseModel):
    """The run activity's heartbeat details (sent as this model's JSON dict)."""

    phase: RunPhase
    elapsed_seconds: float = 0.0
    cpu_seconds: float = 0.0
    output_bytes: int = 0
    fraction: float | None = None
    """The last ``PROGRESS <0..1>`` the program printed, if any."""
