"""Money: ``Decimal`` with a fixed scale of two places, never float, positive and bounded."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, Field

SCALE = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000.00")


class MoneyError(ValueError):
    """An amount that is not valid money (wrong type, too many places, negative, too large)."""


def to_money(value: Decimal | int | str) -> Decimal:
    """Exactly ``value`` as money; refuses floats and amounts with more than two places."""
    if isinstance(value, float):
        raise MoneyError(f"money must not be a float: {value!r}; pass a string or Decimal")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise MoneyError(f"not an amount of money: {value!r}") from None
    if not amount.is_finite():
        raise MoneyError(f"not an amount of money: {value!r}")
    if abs(amount) > MAX_AMOUNT:
        raise MoneyError(f"amount {value} exceeds the limit of {MAX_AMOUNT}")
    quantized = amount.quantize(SCALE, rounding=ROUND_HALF_EVEN)
    if quantized != amount:
        raise MoneyError(f"money has at most two decimal places: {value!r}")
    if abs(quantized) > MAX_AMOUNT:
        raise MoneyError(f"amount {quantized} exceeds the limit of {MAX_AMOUNT}")
    return quantized


def round_cost(value: Decimal) -> Decimal:
    """A computed cost (price x seconds) rounded *up* to the next cent, then checked as money."""
    return to_money(value.quantize(SCALE, rounding=ROUND_CEILING))


def _nonneg(value: Decimal) -> Decimal:
    amount = to_money(value)
    if amount < 0:
        raise MoneyError(f"amount must not be negative: {amount}")
    return amount


def _positive(value: Decimal) -> Decimal:
    amount = to_money(value)
    if amount <= 0:
        raise MoneyError(f"amount must be positive: {amount}")
    return amount


Money = Annotated[Decimal, Field(max_digits=12, decimal_places=2), AfterValidator(to_money)]
"""Any amount of money, including negative balances (overdrafts)."""

NonNegativeMoney = Annotated[
    Decimal, Field(max_digits=12, decimal_places=2), AfterValidator(_nonneg)
]
"""Zero or more: a charge, a held value, a receipt."""

PositiveMoney = Annotated[
    Decimal, Field(max_digits=12, decimal_places=2), AfterValidator(_positive)
]
"""More than zero: a deposit, a cheque's max spend."""
