"""Drafting a compute contract: a calculation's quote, deadline and run token for one job."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from jobsheet.compute.config import Calculation
from jobsheet.compute.models import ComputeContract

DEADLINE_GRACE = timedelta(minutes=10)
"""Beyond run_by + max runtime, time for a retried run and its uploads."""


def contract_id_for(job_uid: str, service: str) -> str:
    return f"{job_uid}@{service}"


def draft_contract(
    calculation: Calculation,
    parameters: dict[str, Any],
    *,
    job_uid: str,
    service: str,
    task_queue: str,
    run_by: datetime,
    now: datetime,
) -> ComputeContract:
    """The contract for ``calculation`` (``parameters`` already validated), with a fresh run
    token of 256 random bits. It binds nobody until the service's contract book holds it."""
    return ComputeContract(
        contract_id=contract_id_for(job_uid, service),
        job_uid=job_uid,
        service=service,
        task_queue=task_queue,
        calculation=calculation.name,
        parameters=parameters,
        price_per_second=calculation.price_per_second,
        fee=calculation.fee,
        quote=calculation.max_cost(),
        max_runtime_seconds=calculation.max_runtime_seconds,
        max_output_bytes=calculation.max_output_bytes,
        run_by=run_by,
        deadline=run_by + timedelta(seconds=calculation.max_runtime_seconds) + DEADLINE_GRACE,
        run_token=secrets.token_urlsafe(32),
        created_at=now,
    )
