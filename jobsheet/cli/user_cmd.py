"""``jobsheet user create | rotate | revoke | keys``: Ed25519 identities and the key registry.

Every command goes through the public API: ``create`` signs up (the private key is kept only
once the API has registered its public half), the others are signed with the user's key.
"""

from __future__ import annotations

import typer
from rich.table import Table

from jobsheet.cli.job_runtime import cli_settings, with_client
from jobsheet.cli.options import JSON_OPTION
from jobsheet.cli.output import console, print_json
from jobsheet.contracts.api import UserView
from jobsheet.identity.keys import PublicKeyRecord, key_path

app = typer.Typer(help="Create users (Ed25519 keys) and rotate or revoke their keys.")


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
    """Make a key pair, register the public key, keep the private key (0600) in the config dir."""
    settings = cli_settings()
    view: UserView = with_client(settings, lambda client: client.signup(name))
    key_id = view.keys[-1].key_id if view.keys else ""
    saved = key_path(name, settings.config_dir)
    if as_json:
        print_json({"user": view.user, "key_id": key_id, "private_key_file": str(saved)})
    else:
        console.print(f"user [bold]{view.user}[/bold] registered with key {key_id}")
        console.print(f"private key: {saved} (mode 0600)")


@app.command()
def rotate(name: str = typer.Argument(..., help="User name."), as_json: bool = JSON_OPTION) -> None:
    """Register a new key; the old one stops signing now but its signatures stay valid."""
    view = with_client(cli_settings(name), lambda client: client.rotate_key())
    _show_keys(view.user, view.keys, as_json)


@app.command()
def revoke(
    name: str = typer.Argument(..., help="User name."),
    key_id: str = typer.Argument(..., help="The key to revoke."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key: from now on it signs nothing (signed with the user's current key)."""
    record = with_client(cli_settings(name), lambda client: client.revoke_key(key_id))
    _show_keys(name, [record], as_json)


@app.command()
def keys(name: str = typer.Argument(..., help="User name."), as_json: bool = JSON_OPTION) -> None:
    """The user's registered public keys and their signing periods (signed with their key)."""
    view = with_client(cli_settings(name), lambda client: client.keys(name))
    _show_keys(view.user, view.keys, as_json)
