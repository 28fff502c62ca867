"""What a compute run costs: one pure rule per outcome (see docs/billing.md)."""

from __future__ import annotations

from decimal import Decimal

from jobsheet.compute.models import ComputeContract, RunResult, RunStatus
from jobsheet.core.money import round_cost, to_money

BILLED_FOR_TIME = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.OUTPUT_TOO_LARGE}
)


def charge_for(contract: ComputeContract, result: RunResult | None) -> Decimal:
    """The amount the job pays the compute service, never above the contract's quote.

    Runs that started pay the fee plus the price of the wall time used (capped at the
    contract's max runtime, rounded up to the cent); a missing input and an infrastructure
    failure (no result at all: ``None``) pay nothing.
    """
    if result is None or result.status not in BILLED_FOR_TIME:
        return to_money("0.00")
    seconds = min(Decimal(str(result.usage.wall_seconds)), Decimal(contract.max_runtime_seconds))
    cost = round_cost(contract.fee + contract.price_per_second * seconds)
    return min(cost, contract.quote)
