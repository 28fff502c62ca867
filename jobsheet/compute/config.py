"""The operator's calculations and compute services, loaded from a TOML file.

Users never supply programs: they name a calculation and give parameters, which are validated
against the calculation's JSON schema before they are substituted into its argv template.
"""

from __future__ import annotations

import re
import sys
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobsheet.core.money import NonNegativeMoney, round_cost

PLACEHOLDER = re.compile(r"\{([a-z_]+(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")


class UnknownCalculationError(LookupError):
    """No calculation of that name is offered by the service."""


class BadParametersError(ValueError):
    """Parameters that do not match the calculation's schema."""


class ComputeService(BaseModel):
    """One compute service: a task queue with its own capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    max_concurrent_runs: int = Field(default=2, ge=1, le=256)
    max_open_contracts: int = Field(default=100, ge=1)
    heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)


class Calculation(BaseModel):
    """A program the operator offers, its price and the limits it runs under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    argv: list[str] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    services: list[str] = Field(min_length=1)
    price_per_second: NonNegativeMoney
    fee: NonNegativeMoney
    max_runtime_seconds: int = Field(gt=0, le=7 * 24 * 3600)
    max_output_bytes: int = Field(gt=0)
    cpu_seconds: int = Field(gt=0)
    memory_bytes: int = Field(gt=0)
    max_processes: int = Field(default=64, gt=0)

    @field_validator("parameters")
    @classmethod
    def _schema_is_valid(cls, schema: dict[str, Any]) -> dict[str, Any]:
        jsonschema.Draft202012Validator.check_schema(schema)
        if schema.get("type") != "object":
            raise ValueError("a parameters schema must describe an object")
        return schema

    @model_validator(mode="after")
    def _placeholders_are_known(self) -> Calculation:
        properties = self.parameters.get("properties", {})
        for part in self.argv:
            for name in PLACEHOLDER.findall(part):
                if name.startswith("params."):
                    if name.removeprefix("params.") not in properties:
                        raise ValueError(f"{self.name}: argv names unknown parameter {name!r}")
                elif name not in FIXED_PLACEHOLDERS:
                    raise ValueError(f"{self.name}: unknown placeholder {{{name}}} in argv")
        return self

    def max_cost(self) -> Decimal:
        """The quote: the fee plus the price of the whole max runtime."""
        return round_cost(self.fee + self.price_per_second * self.max_runtime_seconds)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in, unknown names refused, the schema checked; or BadParametersError."""
        properties: dict[str, Any] = self.parameters.get("properties", {})
        unknown = sorted(set(parameters) - set(properties))
        if unknown:
            raise BadParametersError(f"{self.name} has no parameter(s) {', '.join(unknown)}")
        filled = dict(parameters)
        for name, spec in properties.items():
            if name not in filled and isinstance(spec, dict) and "default" in spec:
                filled[name] = spec["default"]
        validator = jsonschema.Draft202012Validator(self.parameters)
        errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.path))
        if errors:
            messages = "; ".join(_describe(error) for error in errors)
            raise BadParametersError(f"bad parameters for {self.name}: {messages}")
        for part in self.argv:
            for name in PLACEHOLDER.findall(part):
                if name.startswith("params.") and name.removeprefix("params.") not in filled:
                    raise BadParametersError(
                        f"{self.name} needs parameter {name.removeprefix('params.')}"
                    )
        return filled

    def render_argv(
        self,
        parameters: dict[str, Any],
        *,
        input_path: Path,
        output_dir: Path,
        base_dir: Path,
        python: str | None = None,
    ) -> list[str]:
        """The argv with every placeholder replaced; parameters must already be validated.

        ``python`` is the interpreter ``{python}`` names (default: the worker's; the sandbox's
        when the calculation's user cannot run that one)."""
        values = {
            "input": str(input_path),
            "output_dir": str(output_dir),
            "python": python or sys.executable,
            "calculations_dir": str(base_dir),
        }
        for name, value in parameters.items():
            values[f"params.{name}"] = _argv_text(value)
        return [PLACEHOLDER.sub(lambda m: values[m.group(1)], part) for part in self.argv]


FIXED_PLACEHOLDERS = frozenset({"input", "output_dir", "python", "calculations_dir"})


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.path) or "parameters"
    return f"{where}: {error.message}"


def _argv_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise BadParametersError(f"parameter value {value!r} cannot be passed on a command line")


class ComputeConfig(BaseModel):
    """Every service and calculation in one operator config file."""

    model_config = ConfigDict(frozen=True)

    base_dir: Path
    services: dict[str, ComputeService]
    calculations: dict[str, Calculation]

    @model_validator(mode="after")
    def _services_exist(self) -> ComputeConfig:
        for calculation in self.calculations.values():
            for service in calculation.services:
                if service not in self.services:
                    raise ValueError(f"{calculation.name}: unknown service {service!r}")
        return self

    def service(self, name: str) -> ComputeService:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            raise LookupError(f"no compute service {name!r} (configured: {known})") from None

    def calculation(self, name: str, *, service: str) -> Calculation:
        """The calculation ``name`` as offered by ``service``, or UnknownCalculationError."""
        calculation = self.calculations.get(name)
        if calculation is None or service not in calculation.services:
            raise UnknownCalculationError(
                f"compute service {service!r} offers no calculation {name!r}"
            )
        return calculation

    def offered_by(self, service: str) -> list[Calculation]:
        return [c for c in self.calculations.values() if service in c.services]


def load_compute_config(path: Path) -> ComputeConfig:
    """Parse and check the operator's TOML file (``[services.X]`` and ``[calculations.Y]``).

    Money is written as strings (``fee = "0.05"``): TOML floats are refused as money.
    """
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    services = {
        name: ComputeService(name=name, **body) for name, body in raw.get("services", {}).items()
    }
    calculations = {
        name: Calculation(name=name, **body) for name, body in raw.get("calculations", {}).items()
    }
    return ComputeConfig(
        base_dir=path.resolve().parent, services=services, calculations=calculations
    )
