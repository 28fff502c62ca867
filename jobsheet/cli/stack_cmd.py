"""``jobsheet stack up | down | status | logs | rotate-payload-key``: Temporal, S3, the worker and
the public API, and the keys that encrypt Temporal's payloads."""

from __future__ import annotations

import dataclasses
import time

import typer
from rich.table import Table

from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, CliError
from jobsheet.cli.options import JSON_OPTION
from jobsheet.cli.output import console, err_console, heading, print_json
from jobsheet.core.payload_codec import PayloadKeyError
from jobsheet.core.processes import tail
from jobsheet.core.settings import load_settings
from jobsheet.core.temporal import payload_key_ring
from jobsheet.core.temporal import rotate_payload_key as rotate_payload_key_file
from jobsheet.ops.stack import ServiceStatus, Stack

app = typer.Typer(
    help="Run the local stack: Temporal dev server, S3, the worker and the public API."
)


def _show(statuses: list[ServiceStatus], as_json: bool) -> None:
    if as_json:
        print_json([dataclasses.asdict(status) for status in statuses])
        return
    table = Table("service", "state", "pid", "endpoints")
    for status in statuses:
        state = (
            "[green]running[/green]"
            if status.answering
            else "[yellow]not answering[/yellow]"
            if status.running
            else "[red]stopped[/red]"
        )
        endpoints = "\n".join(f"{key}: {value}" for key, value in status.endpoints.items())
        table.add_row(status.name, state, str(status.pid or "-"), endpoints)
    console.print(table)


@app.command()
def up(as_json: bool = JSON_OPTION) -> None:
    """Start the stack (idempotent), wait until all answer, open the provider account."""
    settings = load_settings()
    stack = Stack(settings)
    began = time.monotonic()
    statuses = stack.up(on_progress=lambda msg: err_console.print(msg))
    elapsed = time.monotonic() - began
    if as_json:
        _show(statuses, True)
        return
    _show(statuses, False)
    console.print(f"stack ready in {elapsed:.1f}s; state in {settings.state_dir}")
    console.print(f"Temporal Web UI: [bold]{settings.web_ui_url}[/bold]")
    console.print(
        f"public API:      [bold]{settings.api_url}[/bold] (docs: {settings.api_url}/docs)"
    )
    metrics = [f"{s.name} {s.endpoints['metrics']}" for s in statuses if "metrics" in s.endpoints]
    if metrics:
        console.print(f"metrics:         {', '.join(metrics)}", soft_wrap=True)


@app.command()
def down(as_json: bool = JSON_OPTION) -> None:
    """Stop the services this stack started, last first; their data stays."""
    stopped = Stack(load_settings()).down()
    if as_json:
        print_json({"stopped": stopped})
    else:
        console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(as_json: bool = JSON_OPTION) -> None:
    """Show which services run, their pids and endpoints (the worker's and the API's include
    their Prometheus metrics URLs). Exits 5 when any is not running."""
    statuses = Stack(load_settings()).status()
    _show(statuses, as_json)
    if not all(status.answering for status in statuses):
        raise typer.Exit(EXIT_UNAVAILABLE)


@app.command()
def logs(
    service: str = typer.Argument(None, help="temporal, s3, worker or api; default: all"),
    lines: int = typer.Option(40, "--lines", "-n", help="How many lines from the end."),
) -> None:
    """Print the end of the services' logs."""
    stack = Stack(load_settings())
    names = stack.service_names
    if service is not None and service not in names:
        raise CliError(
            f"unknown service {service!r}; choose from {', '.join(names)}", code=EXIT_BAD_INPUT
        )
    for name in [service] if service else names:
        path = stack.log_file(name)
        heading(f"{name} ({path})")
        # As written: one log line stays one line (rich would wrap JSON lines mid-word).
        console.file.write((tail(path, lines) or "(empty)") + "\n")
        console.file.flush()


@app.command("rotate-payload-key")
def rotate_payload_key(as_json: bool = JSON_OPTION) -> None:
    """Add a new current key that encrypts Temporal payloads from now on; the old keys stay,
    so every payload they encrypted still opens."""
    settings = load_settings()
    try:
        key = rotate_payload_key_file(settings)
    except PayloadKeyError as exc:
        raise CliError(str(exc), code=EXIT_BAD_INPUT) from None
    ring = payload_key_ring(settings)
    if as_json:
        print_json({"current": key.key_id, "keys": list(ring.key_ids)})
        return
    console.print(f"new current payload key: {key.key_id} (keys: {', '.join(ring.key_ids)})")
    console.print(
        "running workers and the API read it within a second; keep the old keys while any "
        "history they encrypted is kept"
    )
