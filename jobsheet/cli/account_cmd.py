"""``jobsheet account create | deposit | balance | statement``: accounts kept by the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.table import Table
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from jobsheet.cli.errors import EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_UNAVAILABLE, CliError
from jobsheet.cli.output import console, print_json
from jobsheet.ledger import client as ledger
from jobsheet.ledger.errors import UNKNOWN_ACCOUNT, UNKNOWN_KEY, UNKNOWN_USER
from jobsheet.ledger.models import BalanceView
from jobsheet.ledger.orders import load_operator
from jobsheet.settings import Settings, load_settings
from jobsheet.temporal import connect

app = typer.Typer(help="Open accounts, deposit money and read balances and statements.")

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")
T = TypeVar("T")


def call_service(settings: Settings, action: Callable[[Client], Awaitable[T]]) -> T:
    """Connect to Temporal, run ``action``, and turn refusals into one-line CLI errors."""

    async def main() -> T:
        try:
            client = await connect(settings)
        except RuntimeError as exc:
            raise CliError(
                f"cannot reach Temporal at {settings.temporal_target}: {exc}",
                code=EXIT_UNAVAILABLE,
            ) from None
        try:
            return await action(client)
        except ApplicationError as exc:
            missing = exc.type in (UNKNOWN_ACCOUNT, UNKNOWN_USER, UNKNOWN_KEY)
            raise CliError(
                f"{exc.type}: {exc.message}", code=EXIT_NOT_FOUND if missing else EXIT_REFUSED
            ) from None

    return asyncio.run(main())


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
    owner: str = typer.Option(..., "--owner", help="The user who signs this account's cheques."),
    overdraft: str = typer.Option("0", "--overdraft", help="How far below zero it may go."),
    account: str = typer.Option(None, "--account", help="Account uid (default: a new one)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Open an account owned by a registered user."""
    settings = load_settings()

    async def action(client: Client) -> BalanceView:
        await ledger.user_keys(client, owner)
        uid = await ledger.open_account(
            client,
            owner=owner,
            account=account,
            overdraft_limit=overdraft,
            task_queue=settings.task_queue_ledger,
        )
        zero = "0.00"
        return BalanceView.model_validate(
            {
                "account": uid,
                "owner": owner,
                "balance": zero,
                "held": zero,
                "available": zero,
                "in_flight": zero,
                "overdraft_limit": overdraft,
                "open_holds": 0,
            }
        )

    view = call_service(settings, action)
    if as_json:
        print_json(view.model_dump(mode="json"))
    else:
        console.print(f"opened account [bold]{view.account}[/bold] for {owner}")


@app.command()
def deposit(
    account: str = typer.Argument(..., help="Account uid."),
    amount: str = typer.Argument(..., help="Amount, e.g. 100.00."),
    key: str = typer.Option(None, "--idempotency-key", help="Repeat safely with the same key."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add money to an account (once per idempotency key), signed with the operator's key."""
    settings = load_settings()
    operator = load_operator(
        settings.operator_user, config_dir=settings.config_dir, state_dir=settings.state_dir
    )
    view = call_service(
        settings,
        lambda client: ledger.deposit(
            client, account, amount, operator=operator, idempotency_key=key
        ),
    )
    if as_json:
        print_json(view.model_dump(mode="json"))
    else:
        show_balance(view)


@app.command()
def balance(
    account: str = typer.Argument(..., help="Account uid."), as_json: bool = JSON_OPTION
) -> None:
    """Balance, held, available and in-flight money of an account."""
    view = call_service(load_settings(), lambda client: ledger.balance(client, account))
    if as_json:
        print_json(view.model_dump(mode="json"))
    else:
        show_balance(view)


@app.command()
def statement(
    account: str = typer.Argument(..., help="Account uid."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many recent entries."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The most recent ledger entries of an account."""
    result = call_service(
        load_settings(), lambda client: ledger.statement(client, account, limit=limit)
    )
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    table = Table("seq", "at", "kind", "amount", "balance Δ", "held Δ", "in flight Δ", "reference")
    for entry in result.entries:
        table.add_row(
            str(entry.seq),
            entry.at.isoformat(timespec="seconds"),
            entry.kind.value,
            str(entry.amount),
            str(entry.balance_delta),
            str(entry.held_delta),
            str(entry.in_flight_delta),
            entry.reference,
        )
    console.print(table)
    show_balance(result.view)
