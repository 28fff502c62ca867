"""``jobsheet user create | rotate | revoke | keys``: Ed25519 identities and the key registry."""

from __future__ import annotations

import typer
from rich.table import Table
from temporalio.client import Client

from jobsheet.cli.account_cmd import call_service
from jobsheet.cli.errors import EXIT_BAD_INPUT, CliError
from jobsheet.cli.output import console, print_json
from jobsheet.identity import (
    IdentityError,
    PublicKeyRecord,
    generate_identity,
    key_path,
    load_identity,
    save_identity,
)
from jobsheet.ledger import client as ledger
from jobsheet.settings import load_settings

app = typer.Typer(help="Create users (Ed25519 keys) and rotate or revoke their keys.")

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _show_keys(name: str, keys: list[PublicKeyRecord], as_json: bool) -> None:
    if as_json:
        print_json({"user": name, "keys": [key.model_dump(mode="json") for key in keys]})
        return
    table = Table("key id", "valid from", "valid until", "revoked at")
    for key in keys:
        table.add_row(
            key.key_id,
            key.valid_from.isoformat(timespec="seconds"),
            key.valid_until.isoformat(timespec="seconds") if key.valid_until else "-",
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
        )
    console.print(table)


@app.command()
def create(name: str = typer.Argument(..., help="User name."), as_json: bool = JSON_OPTION) -> None:
    """Make a key pair, keep the private key (0600) in the config dir, register the public key."""
    settings = load_settings()
    try:
        identity = generate_identity(name)
    except IdentityError as exc:
        raise CliError(str(exc), code=EXIT_BAD_INPUT) from None
    path = key_path(name, settings.config_dir)
    if path.exists():
        raise CliError(
            f"{path} already holds a key for {name}; use `jobsheet user rotate {name}`",
            code=EXIT_BAD_INPUT,
        )

    async def action(client: Client) -> None:
        await ledger.register_user(client, identity, task_queue=settings.task_queue_ledger)

    call_service(settings, action)
    saved = save_identity(identity, config_dir=settings.config_dir)
    if as_json:
        print_json({"user": name, "key_id": identity.key_id, "private_key_file": str(saved)})
    else:
        console.print(f"user [bold]{name}[/bold] registered with key {identity.key_id}")
        console.print(f"private key: {saved} (mode 0600)")


@app.command()
def rotate(name: str = typer.Argument(..., help="User name."), as_json: bool = JSON_OPTION) -> None:
    """Register a new key; the old one stops signing now but its signatures stay valid."""
    settings = load_settings()
    load_identity(name, config_dir=settings.config_dir)
    identity = generate_identity(name)
    keys = call_service(settings, lambda client: ledger.rotate_key(client, identity))
    save_identity(identity, config_dir=settings.config_dir)
    _show_keys(name, keys, as_json)


@app.command()
def revoke(
    name: str = typer.Argument(..., help="User name."),
    key_id: str = typer.Argument(..., help="The key to revoke."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key: from now on it signs nothing."""
    record = call_service(load_settings(), lambda client: ledger.revoke_key(client, name, key_id))
    _show_keys(name, [record], as_json)


@app.command()
def keys(name: str = typer.Argument(..., help="User name."), as_json: bool = JSON_OPTION) -> None:
    """The user's registered public keys and their signing periods."""
    records = call_service(load_settings(), lambda client: ledger.user_keys(client, name))
    _show_keys(name, records, as_json)
