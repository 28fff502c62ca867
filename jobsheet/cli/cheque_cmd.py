"""``jobsheet cheque write``: sign a cheque with a local key and print it as JSON."""

from __future__ import annotations

from datetime import timedelta

import typer

from jobsheet.cli.output import print_json
from jobsheet.core.settings import load_settings
from jobsheet.identity.keys import load_identity
from jobsheet.ledger.cheque import write_cheque

app = typer.Typer(help="Write cheques signed by an account owner.")


@app.command()
def write(
    user: str = typer.Option(..., "--user", help="The account owner who signs."),
    account: str = typer.Option(..., "--account", help="The account the cheque draws on."),
    recipient: str = typer.Option(..., "--recipient", help="The only account that may cash it."),
    resource: str = typer.Option(..., "--resource", help="What it pays for (a fingerprint)."),
    max_spend: str = typer.Option(..., "--max-spend", help="The most it pays, e.g. 25.00."),
    valid_for: int = typer.Option(120, "--valid-for", help="Minutes until it expires."),
) -> None:
    """Print a signed cheque as JSON (nothing is sent to the service)."""
    if valid_for <= 0:
        raise ValueError("--valid-for must be a positive number of minutes")
    identity = load_identity(user, config_dir=load_settings().config_dir)
    cheque = write_cheque(
        identity,
        account=account,
        recipient=recipient,
        resource=resource,
        max_spend=max_spend,
        valid_for=timedelta(minutes=valid_for),
    )
    print_json(cheque.model_dump(mode="json"))
