"""The billing rule per outcome (docs/billing.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from jobsheet.compute.billing import charge_for
from jobsheet.compute.models import ComputeContract, RunResult, RunStatus, Usage

NOW = datetime(2026, 11, 28, tzinfo=UTC)
CONTRACT = ComputeContract(
    contract_id="job@svc",
    job_uid="job",
    service="svc",
    task_queue="q",
    calculation="c",
    parameters={},
    price_per_second=Decimal("0.03"),
    fee=Decimal("0.10"),
    quote=Decimal("3.10"),
    max_runtime_seconds=100,
    max_output_bytes=1000,
    run_by=NOW,
    deadline=NOW,
    run_token="t" * 43,
    created_at=NOW,
)


def result(status: RunStatus, wall: float) -> RunResult:
    return RunResult(
        contract_id="job@svc", status=status, usage=Usage(wall_seconds=wall, cpu_seconds=0)
    )


@pytest.mark.parametrize(
    "status",
    [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.OUTPUT_TOO_LARGE],
)
def test_runs_that_ran_pay_the_fee_and_the_time_used_rounded_up(status: RunStatus) -> None:
    # 0.10 + 0.03 x 10.001 = 0.40003 -> 0.41
    assert charge_for(CONTRACT, result(status, 10.001)) == Decimal("0.41")


def test_an_instant_run_pays_the_fee() -> None:
    assert charge_for(CONTRACT, result(RunStatus.SUCCEEDED, 0.0)) == Decimal("0.10")


def test_the_charge_never_exceeds_the_quote() -> None:
    assert charge_for(CONTRACT, result(RunStatus.TIMED_OUT, 100.7)) == CONTRACT.quote


def test_missing_input_and_infrastructure_failure_pay_nothing() -> None:
    assert charge_for(CONTRACT, result(RunStatus.INPUT_MISSING, 5.0)) == Decimal("0.00")
    assert charge_for(CONTRACT, None) == Decimal("0.00")
