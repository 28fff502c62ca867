"""``jobsheet submit | upload | run | watch | show | list | download | cancel``: a user's jobs.

Data goes to stdout (``--json`` for scripts); progress bars go to stderr and are off with
``--json``. Failures are one ``error:`` line with exit code 2 (bad input), 3 (refused by the
service), 4 (not found), 5 (unavailable) or 1 (the job itself failed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, CliError
from jobsheet.cli.job_runtime import cli_settings, run_async, with_client
from jobsheet.cli.job_views import RunBar, jobs_table, sheet_tables, styled, transfer_bars
from jobsheet.cli.output import console, err_console, print_json
from jobsheet.jobs.models import JobState
from jobsheet.sdk import Client, Job
from jobsheet.sdk.run_par import call_run_par

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")
USER_OPTION = typer.Option(None, "--user", help="Act as this user (default: JOBSHEET_USER).")


def parse_params(pairs: list[str], as_json: str | None) -> dict[str, Any]:
    """``--params JSON`` merged with ``--param NAME=VALUE`` (VALUE parsed as JSON when it can be)."""
    params: dict[str, Any] = {}
    if as_json:
        try:
            loaded = json.loads(as_json)
        except json.JSONDecodeError as exc:
            raise CliError(f"--params is not valid JSON: {exc}", code=EXIT_BAD_INPUT) from None
        if not isinstance(loaded, dict):
            raise CliError("--params must be a JSON object", code=EXIT_BAD_INPUT)
        params.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--param {pair!r} is not NAME=VALUE", code=EXIT_BAD_INPUT)
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params


def _job_data(job: Job) -> dict[str, Any]:
    return {
        "uid": job.uid,
        "upload_url": job.upload_url,
        "run_url": job.run_url,
        "expires_at": job.expires_at.isoformat() if job.expires_at else None,
    }


def submit(
    calculation: Annotated[
        str, typer.Argument(help="The calculation, e.g. checksum.", metavar="CALCULATION")
    ],
    input_file: Annotated[Path, typer.Argument(help="The input file.", metavar="INPUT")],
    account: Annotated[str, typer.Option("--account", help="The account that pays.")],
    max_spend: Annotated[str, typer.Option("--max-spend", help="The most the job may cost.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A parameter NAME=VALUE.")
    ] = None,
    params: str = typer.Option(None, "--params", help="Parameters as a JSON object."),
    service: str = typer.Option("standard", "--service", help="The compute service."),
    upload: bool = typer.Option(False, "--upload", help="Upload the input right away."),
    run: bool = typer.Option(False, "--run", help="Upload and trigger the run right away."),
    user: str = USER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask for a job and pay with a cheque; print its uid, upload URL, run URL and deadline."""
    parameters = parse_params(param or [], params)

    async def action(client: Client) -> dict[str, Any]:
        job = await client.submit(calculation, parameters, input_file, account, max_spend, service)
        data = _job_data(job)
        if upload or run:
            with transfer_bars(err_console, enabled=not as_json) as bars:
                data["uploaded_bytes"] = await job.upload(progress=bars)
        if run:
            data["run"] = (await job.run()).model_dump(mode="json")
        return data

    data = with_client(cli_settings(user), action)
    if as_json:
        print_json(data)
        return
    console.print(f"job [bold]{data['uid']}[/bold] is paid for; run it by {data['expires_at']}")
    console.print(f"upload URL: {data['upload_url']}", soft_wrap=True)
    console.print(f"run URL:    {data['run_url']}", soft_wrap=True)
    if "uploaded_bytes" in data:
        console.print(f"uploaded {data['uploaded_bytes']} bytes")
    if "run" in data:
        console.print(f"run triggered: {data['run']['message'] or data['run']['state']}")


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
        with transfer_bars(err_console, enabled=not as_json) as bars:
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
    as_json: bool = JSON_OPTION,
) -> None:
    """Follow a job to its end: every state it enters, and the run's progress.

    With --json, one JSON object per line. Exits 1 when the job ends other than succeeded."""

    async def action(client: Client) -> Any:
        final = None
        with RunBar(err_console, enabled=not as_json) as bar:
            async for event in client.job(uid).watch(interval):
                if as_json:
                    print(json.dumps(event.to_data(), sort_keys=True), flush=True)
                else:
                    bar.show(event)
                final = event.sheet
        return final

    sheet = with_client(cli_settings(), action)
    if sheet.state != JobState.SUCCEEDED:
        raise CliError(
            f"job {uid} ended as {sheet.state.value}: {sheet.error or 'no reason given'}",
            code=EXIT_FAILURE,
        )


def show(uid: str = typer.Argument(..., help="The job uid."), as_json: bool = JSON_OPTION) -> None:
    """The job sheet: state, timeline, costs, outputs (never a PAR URL)."""
    sheet = with_client(cli_settings(), lambda client: client.load(uid))
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
    as_json: bool = JSON_OPTION,
) -> None:
    """Download the outputs through download PARs, checking each one's size and sha256."""

    async def action(client: Client) -> list[Path]:
        with transfer_bars(err_console, enabled=not as_json) as bars:
            return await client.job(uid).download(directory, progress=bars)

    paths = with_client(cli_settings(), action)
    if as_json:
        print_json({"uid": uid, "files": [str(path) for path in paths]})
        return
    for path in paths:
        console.print(f"{path} (checked)")


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
