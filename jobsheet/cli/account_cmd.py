"""``jobsheet account create | deposit | balance | statement``: accounts kept by the ledger.

All through the public API: a user opens accounts they own and reads them; ``deposit`` is the
operator's, signed with the operator's key (``JOBSHEET_OPERATOR_USER`` in the config dir, else in
the state dir where ``jobsheet stack up`` keeps it).
"""

from __future__ import annotations

import typer
from rich.table import Table

from jobsheet.cli.job_runtime import cli_settings, operator_identity, with_client
from jobsheet.cli.options import JSON_OPTION, USER_OPTION
from jobsheet.cli.output import console, print_json
from jobsheet.ledger.models import BalanceView

app = typer.Typer(help="Open accounts, deposit money and read balances and statements.")


def show_balance(view: BalanceView) -> None:
    table = Table("account", "owner", "balance", "held", "available", "in flight", "overdraft")
    table.add_row(
        view.account,
        view.owner,
        str(view.balance),
        str(view.held),
        str(view.available),
        str(view.in_flight),
        str(view.overdraft_limit),
    )
    console.print(table)


@app.command()
def create(
    account: str = typer.Option(None, "--account", help="Account uid (default: a new one)."),
    owner: str = typer.Option(
        None, "--owner", help="The user who owns it and signs its cheques: you (as --user)."
    ),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Open an account owned by you (the user who signs the request)."""
    settings = cli_settings(user or owner)
    view = with_client(settings, lambda client: client.open_account(account))
    if as_json:
        print_json(view.model_dump(mode="json"))
    else:
        console.print(f"opened account [bold]{view.account}[/bold] for {view.owner}")


@app.command()
def deposit(
    account: str = typer.Argument(..., help="Account uid."),
    amount: str = typer.Argument(..., help="Amount, e.g. 100.00."),
    key: str = typer.Option(None, "--idempotency-key", help="Repeat safely with the same key."),
    reference: str = typer.Option("", "--reference", help="A note for the statement."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add money to an account (the operator's command; once per idempotency key)."""
    settings = cli_settings()
    operator = operator_identity(settings)
    view = with_client(
        settings,
        lambda client: client.deposit(account, amount, idempotency_key=key, reference=reference),
        identity=operator,
    )
    if as_json:
        print_json(view.model_dump(mode="json"))
    else:
        show_balance(view)


@app.command()
def balance(
    account: str = typer.Argument(..., help="Account uid."),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Balance, held, available and in-flight money of an account you own."""
    view = with_client(cli_settings(user), lambda client: client.balance(account))
    if as_json:
        print_json(view.model_dump(mode="json"))
    else:
        show_balance(view)


@app.command()
def statement(
    account: str = typer.Argument(..., help="Account uid."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many recent entries."),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """The most recent ledger entries of an account you own."""
    result = with_client(cli_settings(user), lambda client: client.statement(account, limit=limit))
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    table = Table(
        "seq", "at", "kind", "amount", "balance Δ", "held Δ", "in flight Δ", "job", "reference"
    )
    for line in result.lines:
        entry = line.entry
        table.add_row(
            str(entry.seq),
            entry.at.isoformat(timespec="seconds"),
            entry.kind.value,
            str(entry.amount),
            str(entry.balance_delta),
            str(entry.held_delta),
            str(entry.in_flight_delta),
            line.job_uid or "-",
            entry.reference,
        )
    console.print(table)
    show_balance(result.balance)
