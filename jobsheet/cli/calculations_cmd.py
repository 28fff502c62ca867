"""``jobsheet calculations``: what the operator offers, what each takes and the most it costs."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from jobsheet.cli.job_runtime import cli_settings, with_client
from jobsheet.cli.output import console, print_json

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


def describe_parameters(schema: dict[str, Any]) -> str:
    """The parameters of a JSON schema, one ``name (type)`` each, required ones marked ``*``."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    parts = []
    for name, spec in properties.items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        parts.append(f"{name}{'*' if name in required else ''} ({kind})")
    return ", ".join(parts) or "-"


def calculations(as_json: bool = JSON_OPTION) -> None:
    """The calculations you can submit: services, parameters and the quote (the most one run
    costs, which is what a cheque must cover)."""
    offer = with_client(cli_settings(), lambda client: client.calculations())
    if as_json:
        print_json(offer.model_dump(mode="json"))
        return
    table = Table("calculation", "services", "parameters", "quote", "description")
    for calc in offer.calculations:
        table.add_row(
            calc.name,
            ", ".join(calc.services),
            describe_parameters(calc.parameters),
            str(calc.quote),
            calc.description,
        )
    console.print(table)
    console.print(f"cheques pay account [bold]{offer.payee}[/bold]; `*` marks a required parameter")
