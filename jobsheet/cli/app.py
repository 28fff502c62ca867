"""The root ``jobsheet`` command: sub-command groups, one-line errors and a clean exit."""

from __future__ import annotations

import sys
import traceback

import click
import typer

from jobsheet.cli import (
    account_cmd,
    calculations_cmd,
    cheque_cmd,
    job_cmds,
    smoke_cmd,
    stack_cmd,
    user_cmd,
)
from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_UNAVAILABLE, CliError
from jobsheet.processes import PortInUse, ServerDidNotStart
from jobsheet.temporal import exit_without_teardown

app = typer.Typer(
    name="jobsheet",
    help="Durable, pay-per-job compute on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(stack_cmd.app, name="stack")
app.add_typer(user_cmd.app, name="user")
app.add_typer(account_cmd.app, name="account")
app.add_typer(cheque_cmd.app, name="cheque")
app.command("smoke")(smoke_cmd.smoke)
app.command("calculations")(calculations_cmd.calculations)
job_cmds.register(app)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Durable, pay-per-job compute on Temporal."""


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="jobsheet", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CliError as exc:
        _report(exc, debug)
        return exc.code
    except (PortInUse, ServerDidNotStart) as exc:
        _report(exc, debug)
        return EXIT_UNAVAILABLE
    except (ValueError, FileNotFoundError) as exc:
        _report(exc, debug)
        return EXIT_BAD_INPUT
    except Exception as exc:
        _report(exc, debug)
        return EXIT_FAILURE


def _report(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc)
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"error: {message}", file=sys.stderr)


def main() -> None:
    """Console-script entry point: run, flush, and leave without interpreter teardown.

    temporalio's native threads can abort the interpreter while it finalises (sdk-python#300),
    so a short-lived command exits with ``os._exit`` once its output is flushed.
    """
    exit_without_teardown(run())
