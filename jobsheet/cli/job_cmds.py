"""``jobsheet upload | run | watch | show | list | download | cancel``: a user's jobs
(``submit`` is in :mod:`jobsheet.cli.submit_cmd`).

Data goes to stdout (``--json`` for scripts), ``watch``'s lines too; transfer bars go to stderr.
Bars are off with ``--json`` and when their stream is not a terminal. Failures are one
``error:`` line with exit code 2 (bad input), 3 (refused by the service), 4 (not found),
5 (unavailable) or 1 (the job itself failed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_REFUSED, CliError
from jobsheet.cli.job_runtime import cli_settings, run_async, with_client
from jobsheet.cli.job_views import RunBar, jobs_table, sheet_tables, styled, transfer_bars
from jobsheet.cli.options import JSON_OPTION, USER_OPTION
from jobsheet.cli.output import console, err_console, print_json
from jobsheet.cli.submit_cmd import submit
from jobsheet.jobs.models import JobSheet, JobState, output_prefix
from jobsheet.sdk import Client
from jobsheet.sdk.run_par import call_run_par
from jobsheet.sdk.transfer import output_path


def upload(
    uid: str = typer.Argument(..., help="The job uid."),
    input_file: Annotated[
        Path | None,
        typer.Argument(help="The input (default: the file submitted).", metavar="INPUT"),
    ] = None,
    url: str = typer.Option(
        None, "--url", help="The upload URL (default: the one kept at submit)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Stream the input through the job's upload PAR."""

    async def action(client: Client) -> int:
        job = client.job(uid)
        job.upload_url = url or job.upload_url
        with transfer_bars(err_console, enabled=_bars(as_json)) as bars:
            return await job.upload(input_file, progress=bars)

    sent = with_client(cli_settings(), action)
    if as_json:
        print_json({"uid": uid, "uploaded_bytes": sent})
    else:
        console.print(f"uploaded {sent} bytes for job {uid}")


def run(
    target: str = typer.Argument(..., help="The job uid or its run URL.", metavar="UID|URL"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Trigger the run by calling the run PAR URL (no other credential needed)."""
    if target.startswith(("http://", "https://")):
        result = run_async(call_run_par(target))
    else:

        async def action(client: Client) -> Any:
            return await client.job(target).run()

        result = with_client(cli_settings(), action)
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        console.print(f"job {result.uid}: {result.message or result.state} (HTTP {result.status})")


def watch(
    uid: str = typer.Argument(..., help="The job uid."),
    interval: float = typer.Option(0.5, "--interval", help="Seconds between polls."),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Follow a job to its end: every state it enters, and the run's progress.

    With --json, one JSON object per line. Exits 1 when the job ends other than succeeded."""

    async def action(client: Client) -> Any:
        final = None
        with RunBar(console, enabled=not as_json and console.is_terminal) as bar:
            async for event in client.job(uid).watch(interval):
                if as_json:
                    print(json.dumps(event.to_data(), sort_keys=True), flush=True)
                else:
                    bar.show(event)
                final = event.sheet
        return final

    sheet = with_client(cli_settings(user), action)
    if sheet.state != JobState.SUCCEEDED:
        raise CliError(
            f"job {uid} ended as {sheet.state.value}: {sheet.error or 'no reason given'}",
            code=EXIT_FAILURE,
        )


def show(
    uid: str = typer.Argument(..., help="The job uid."),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """The job sheet: state, parameters, timeline, costs, outputs (never a PAR URL)."""
    sheet = with_client(cli_settings(user), lambda client: client.load(uid))
    if as_json:
        print_json(sheet.to_data())
        return
    for table in sheet_tables(sheet):
        console.print(table)


def list_jobs(
    state: str = typer.Option(None, "--state", help="Only jobs in this state."),
    account: str = typer.Option(None, "--account", help="Only jobs paid from this account."),
    user: str = typer.Option(None, "--user", help="Only jobs of this user."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Jobs by state, account or user, newest first."""
    jobs = with_client(
        cli_settings(), lambda client: client.list_jobs(state=state, account=account, user=user)
    )
    if as_json:
        print_json([job.model_dump(mode="json") for job in jobs])
    elif not jobs:
        console.print("no jobs")
    else:
        console.print(jobs_table(jobs))


def download(
    uid: str = typer.Argument(..., help="The job uid."),
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Where to put the outputs.")
    ] = Path("."),
    force: bool = typer.Option(False, "--force", help="Overwrite files already there."),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Download the outputs through download PARs, checking each one's size and sha256.

    Refuses to overwrite a file already in the directory unless given --force."""

    async def action(client: Client) -> list[Path]:
        sheet = await client.load(uid)
        _check_downloadable(sheet)
        if not force:
            _refuse_overwrite(sheet, directory)
        with transfer_bars(err_console, enabled=_bars(as_json)) as bars:
            return await client.job(uid).download(directory, progress=bars)

    paths = with_client(cli_settings(user), action)
    if as_json:
        print_json({"uid": uid, "files": [str(path) for path in paths]})
        return
    for path in paths:
        console.print(f"{path} (checked)", markup=False, highlight=False)


def _check_downloadable(sheet: JobSheet) -> None:
    """An expired job never ran: say so, rather than let the download fail for want of outputs."""
    if sheet.state == JobState.EXPIRED:
        deadline = sheet.expires_at.isoformat(timespec="seconds") if sheet.expires_at else "?"
        raise CliError(
            f"job {sheet.uid} expired at {deadline} before its run was triggered: "
            "it has no outputs",
            code=EXIT_REFUSED,
        )


def _refuse_overwrite(sheet: JobSheet, directory: Path) -> None:
    prefix = output_prefix(sheet.uid)
    there = [
        str(path)
        for path in (output_path(directory, output.key, prefix) for output in sheet.outputs)
        if path.exists()
    ]
    if there:
        raise CliError(
            f"{', '.join(there)} already exist{'s' if len(there) == 1 else ''}: "
            "pass --force to overwrite, or choose another --dir",
            code=EXIT_BAD_INPUT,
        )


def cancel(
    uid: str = typer.Argument(..., help="The job uid."),
    reason: str = typer.Option("cancelled by the owner", "--reason", help="Why."),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Cancel a job you own: everything done so far is undone or settled, then it ends."""
    sheet = with_client(cli_settings(user), lambda client: client.job(uid).cancel(reason))
    if as_json:
        print_json(sheet.to_data())
    else:
        console.print(
            f"job {uid} is {styled(sheet.state)}; charged {sheet.costs.charged}, "
            f"refunded {sheet.costs.refunded}"
        )


def _bars(as_json: bool) -> bool:
    """Transfer bars (on stderr) for people at a terminal only."""
    return not as_json and err_console.is_terminal


def register(app: typer.Typer) -> None:
    """Add the job commands to the root ``jobsheet`` command."""
    app.command("submit")(submit)
    app.command("upload")(upload)
    app.command("run")(run)
    app.command("watch")(watch)
    app.command("show")(show)
    app.command("list")(list_jobs)
    app.command("download")(download)
    app.command("cancel")(cancel)
