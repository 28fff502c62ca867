"""Options several commands share, declared once."""

from __future__ import annotations

import typer

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")
USER_OPTION = typer.Option(None, "--user", help="Act as this user (default: JOBSHEET_USER).")
