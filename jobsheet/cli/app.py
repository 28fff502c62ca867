"""The root ``jobsheet`` command: sub-command groups, one-line errors and a clean exit."""

from __future__ import annotations

import sys
import traceback

import click
import typer

import jobsheet
from jobsheet.cli import (
    account_cmd,
    calculations_cmd,
    cheque_cmd,
    job_cmds,
    smoke_cmd,
    stack_cmd,
    user_cmd,
)
from jobsheet.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
)
from jobsheet.core.processes import PortInUse, ServerDidNotStart
from jobsheet.core.temporal import exit_without_teardown

app = typer.Typer(
    name="jobsheet",
    help="Durable, pay-per-job compute on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(stack_cmd.app, name="stack", no_args_is_help=True)
app.add_typer(user_cmd.app, name="user", no_args_is_help=True)
app.add_typer(account_cmd.app, name="account", no_args_is_help=True)
app.add_typer(cheque_cmd.app, name="cheque", no_args_is_help=True)
app.command("smoke")(smoke_cmd.smoke)
app.command("calculations")(calculations_cmd.calculations)
job_cmds.register(app)

# typer >= 0.22 raises its own copy of click's exceptions; older ones raise click's.
USAGE_ERRORS = (click.ClickException, typer.TyperException)
ABORTS = (click.exceptions.Abort, typer.Abort)


def _print_version(value: bool) -> None:
    if value:
        print(f"jobsheet {jobsheet.__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Durable, pay-per-job compute on Temporal."""


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="jobsheet", standalone_mode=False)
    except ABORTS:
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:
        if "--debug" in args:
            traceback.print_exception(exc)
        message, code = _failure(exc)
        if message:
            print(f"error: {message}", file=sys.stderr)
        return code
    return result if isinstance(result, int) else EXIT_OK


def _failure(exc: Exception) -> tuple[str, int]:
    """The one line that says what went wrong (empty when nothing is left to say) and the exit
    code that says what kind of failure it was."""
    if isinstance(exc, USAGE_ERRORS):
        return _usage_message(exc)
    if isinstance(exc, CliError):
        return _one_line(exc), exc.code
    if isinstance(exc, PortInUse | ServerDidNotStart):
        return _one_line(exc), EXIT_UNAVAILABLE
    if isinstance(exc, ValueError | FileNotFoundError):
        return _one_line(exc), EXIT_BAD_INPUT
    return _one_line(exc), EXIT_FAILURE


def _usage_message(exc: click.ClickException | typer.TyperException) -> tuple[str, int]:
    """A usage error in the words a user typed (``missing option '--max-spend'``), and where to
    read how the command is used; exit 2. A bare group prints its help and exits 0."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":
        return "", EXIT_OK  # its help is already printed
    message = exc.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    if ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    code = getattr(exc, "exit_code", EXIT_BAD_INPUT)
    return " ".join(message.split()), code if code != EXIT_FAILURE else EXIT_BAD_INPUT


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main() -> None:
    """Console-script entry point: run, flush, and leave without interpreter teardown.

    temporalio's native threads can abort the interpreter while it finalises (sdk-python#300),
    so a short-lived command exits with ``os._exit`` once its output is flushed.
    """
    exit_without_teardown(run())
