"""How the contract book and its contracts are called: workflow ids, inputs, updates, queries.

The book (workflows/compute_service.py) and each contract (workflows/compute_contract.py) are
workflows, named with these; the compute activities reserve and release through these
declarations (activities/contract_book.py), checked against the workflows by
tests/contracts/test_workflow_calls.py.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from jobsheet.compute.models import (
    ComputeContract,
    ContractRecord,
    ReleaseRequest,
    ReleaseResult,
)
from jobsheet.contracts.workflow_calls import Query, Update

BOOK_WORKFLOW = "ComputeServiceWorkflow"
CONTRACT_WORKFLOW = "ComputeContractWorkflow"

STARTS_PER_RUN = 500
"""Contract workflows one run starts before it continues as new: far below Temporal's 2,000
pending children (and 2,000 updates) per run, and a history of a few thousand events."""
ENDS_PER_RUN = 100
"""Ends one run counts before it continues as new, and the most it passes on to the next run to
ignore a duplicated ``contract_ended``: about 5 KB of contract ids."""


def contract_book_id(task_queue: str) -> str:
    """The workflow id of the contract book for the service served on ``task_queue``."""
    return f"compute-contracts-{task_queue}"


def contract_workflow_id(contract_id: str) -> str:
    """The workflow id of the contract ``contract_id`` (``<job uid>@<service>``)."""
    return f"compute-contract-{contract_id}"


class ContractBookInput(BaseModel):
    service: str
    max_open_contracts: int = Field(ge=1)
    records: dict[str, ContractRecord] = Field(default_factory=dict)
    """Contracts the book holds in its own state: all of them in a run begun before
    ``CONTRACTS_AS_WORKFLOWS_PATCH``, afterwards only those carried from such a run."""
    open_contracts: int = Field(default=0, ge=0)
    """Contract workflows started and not yet reported ended."""
    ended_recently: list[str] = Field(default_factory=list)
    """The last contracts (at most ``ends_per_run``) whose end the previous run counted: a
    duplicated signal for one of them is ignored."""
    started_recently: list[str] = Field(default_factory=list)
    """The contracts (at most ``starts_per_run``) whose workflow the previous run started: a
    reservation of one of them again is refused as reserved before (``ANSWER_AT_ONCE_PATCH``)."""
    starts_per_run: int = Field(default=STARTS_PER_RUN, ge=1)
    ends_per_run: int = Field(default=ENDS_PER_RUN, ge=1)


class ReserveRequest(BaseModel):
    contract: ComputeContract
    max_open_contracts: int = Field(ge=1)
    """The service's current capacity (the operator may change it between contracts)."""


RESERVE: Update[ReserveRequest, ContractRecord] = Update("reserve", ContractRecord)
"""The book holds a slot for a contract and starts its workflow."""
BOOK_RELEASE: Update[ReleaseRequest, ReleaseResult] = Update("release", ReleaseResult)
"""The book frees a contract it holds in its own records."""
BOOK_CONTRACT: Query[ContractRecord | None] = Query("contract", ContractRecord | None)
"""A contract the book holds in its records."""
BOOK_STARTED: Query[bool] = Query("started", bool)
"""Whether the book's current or previous run started the contract's workflow."""
CONTRACT_RELEASE: Update[ReleaseRequest, ReleaseResult] = Update("release", ReleaseResult)
"""A contract's workflow frees its slot."""
CONTRACT_RECORD: Query[ContractRecord] = Query("record", ContractRecord)
"""A contract's workflow's record."""
