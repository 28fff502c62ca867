"""``jobsheet calculations``: what the operator offers, what each takes and the most it costs."""

from __future__ import annotations

import difflib
import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from jobsheet.cli.errors import EXIT_BAD_INPUT, CliError
from jobsheet.cli.job_runtime import cli_settings, with_client
from jobsheet.cli.options import JSON_OPTION
from jobsheet.cli.output import console, print_json
from jobsheet.contracts.api import CalculationList, CalculationView


def describe_parameter(name: str, spec: Any, *, required: bool) -> str:
    """``name (type)``, ``*`` after a required name, `` = default`` when it has one."""
    spec = spec if isinstance(spec, dict) else {}
    text = f"{name}{'*' if required else ''} ({spec.get('type', 'any')})"
    if "default" in spec:
        text += f" = {json.dumps(spec['default'])}"
    return text


def describe_parameters(schema: dict[str, Any]) -> str:
    """The parameters of a JSON schema, one ``name (type) = default`` each, required ones
    marked ``*``; ``-`` when there are none."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    parts = [
        describe_parameter(name, spec, required=name in required)
        for name, spec in properties.items()
    ]
    return ", ".join(parts) or "-"


def find_calculation(offer: CalculationList, name: str) -> CalculationView:
    """The calculation called ``name``; else a usage error that lists them all and suggests the
    closest name."""
    by_name = {calc.name: calc for calc in offer.calculations}
    if name in by_name:
        return by_name[name]
    close = difflib.get_close_matches(name, list(by_name), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise CliError(
        f"no calculation {name!r}; {hint}calculations: {', '.join(sorted(by_name))} "
        "(see `jobsheet calculations`)",
        code=EXIT_BAD_INPUT,
    )


def calculations(as_json: bool = JSON_OPTION) -> None:
    """The calculations you can submit: services, parameters, input and the quote (the most one
    run costs, which is what a cheque must cover)."""
    offer = with_client(cli_settings(), lambda client: client.calculations())
    if as_json:
        print_json(offer.model_dump(mode="json"))
        return
    table = Table("calculation", "services", "parameters", "input", "quote", "description")
    table.columns[0].no_wrap = True
    for calc in offer.calculations:
        table.add_row(
            calc.name,
            ", ".join(calc.services),
            escape(describe_parameters(calc.parameters)),
            "a file" if calc.reads_input else "none",
            str(calc.quote),
            calc.description,
        )
    console.print(table)
    console.print(
        f"cheques pay account [bold]{offer.payee}[/bold]; `*` marks a required parameter; "
        "the quote is the most one run costs (--max-spend must cover it)"
    )
