"""The operator's calculations file: shipped examples load, bad configs are refused."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobsheet.compute.config import (
    BadParametersError,
    UnknownCalculationError,
    load_compute_config,
)
from jobsheet.core.settings import Settings


def test_the_shipped_config_loads_with_three_calculations() -> None:
    config = load_compute_config(Settings().calculations_file)
    assert {"checksum", "monte-carlo-pi", "text-stats"} <= set(config.calculations)
    assert set(config.services) == {"standard", "science"}
    pi = config.calculation("monte-carlo-pi", service="science")
    assert pi.max_cost() == Decimal("0.10") + Decimal("0.02") * 600
    assert pi.validate_parameters({"samples": 10}) == {"samples": 10, "seed": 1}
    with pytest.raises(UnknownCalculationError):
        config.calculation("checksum", service="science")


@pytest.mark.parametrize(
    "parameters", [{}, {"samples": 0}, {"samples": "10"}, {"samples": 10, "shell": "rm -rf /"}]
)
def test_parameters_are_validated(parameters: dict) -> None:
    pi = load_compute_config(Settings().calculations_file).calculations["monte-carlo-pi"]
    with pytest.raises(BadParametersError):
        pi.validate_parameters(parameters)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "calculations.toml"
    path.write_text("[services.s]\n" + body)
    return path


CALC = """
[calculations.c]
description = "d"
services = ["s"]
price_per_second = {price}
fee = "0.01"
max_runtime_seconds = 5
max_output_bytes = 10
cpu_seconds = 5
memory_bytes = 100000000
argv = {argv}
"""


@pytest.mark.parametrize(
    ("price", "argv"),
    [
        ("0.001", '["true"]'),  # a float: money must be a string
        ('"0.001"', '["true"]'),  # three places
        ('"0.01"', '["cat", "{secret}"]'),  # unknown placeholder
        ('"0.01"', '["echo", "{params.x}"]'),  # parameter not in the schema
        ('"0.01"', "[]"),
    ],
)
def test_bad_configs_are_refused(tmp_path: Path, price: str, argv: str) -> None:
    with pytest.raises((ValidationError, ValueError)):
        load_compute_config(write(tmp_path, CALC.format(price=price, argv=argv)))
