"""Drafting a compute contract: is the calculation offered, are its parameters valid, and its
quote, deadline and run token for one job."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from jobsheet.compute.config import (
    BadParametersError,
    Calculation,
    ComputeConfig,
    UnknownCalculationError,
)
from jobsheet.compute.models import ComputeContract

DEADLINE_GRACE = timedelta(minutes=10)
"""Beyond run_by + max runtime, time for a retried run and its uploads."""


class ContractRefused(Exception):
    """The operator does not offer this calculation so, or its parameters are invalid."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


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


def contract_for(
    config: ComputeConfig,
    *,
    job_uid: str,
    service: str,
    calculation: str,
    parameters: dict[str, Any],
    task_queue: str,
    run_by: datetime,
    now: datetime,
) -> ComputeContract:
    """Check that ``service`` offers ``calculation`` with these ``parameters`` and draft its
    contract; :class:`ContractRefused` names what is wrong (and what exists)."""
    refusal = policy_refusal(config, service=service, calculation=calculation)
    if refusal:
        kind, _, message = refusal.partition(": ")
        raise ContractRefused(kind, message)
    try:
        offered = config.calculation(calculation, service=service)
        checked = offered.validate_parameters(parameters)
    except UnknownCalculationError as exc:  # pragma: no cover - policy_refusal checked it
        raise ContractRefused("UnknownCalculation", str(exc)) from None
    except BadParametersError as exc:
        raise ContractRefused("BadParameters", str(exc)) from None
    return draft_contract(
        offered,
        checked,
        job_uid=job_uid,
        service=service,
        task_queue=task_queue,
        run_by=run_by,
        now=now,
    )
