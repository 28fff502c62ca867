"""``jobsheet submit``: ask for a job, pay with a cheque, and say what it held and what to run
next.

The calculation is looked up first (``GET /v1/calculations``, which the submission asks for
anyway to learn the payee), so a mistyped name gets the list and a suggestion, and a
calculation that reads no input needs no input file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from jobsheet.cli.calculations_cmd import find_calculation
from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, CliError
from jobsheet.cli.job_runtime import cli_settings, with_client
from jobsheet.cli.job_views import transfer_bars
from jobsheet.cli.options import JSON_OPTION, USER_OPTION
from jobsheet.cli.output import console, err_console, print_json
from jobsheet.contracts.api import CalculationView
from jobsheet.sdk import Client, Job, NotFound


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


def input_for(calc: CalculationView, given: Path | None) -> Path | None:
    """The file to promise and upload: ``given`` for a calculation that reads its input; None
    for one that reads none (the job's upload is then an empty object)."""
    if calc.reads_input:
        if given is None:
            raise CliError(
                f"{calc.name} reads an input file: name it after the calculation "
                f"(jobsheet submit {calc.name} INPUT ...)",
                code=EXIT_BAD_INPUT,
            )
        return given
    if given is not None:
        raise CliError(f"{calc.name} reads no input: leave out {given}", code=EXIT_BAD_INPUT)
    return None


def next_commands(uid: str, *, uploaded: bool, ran: bool, user: str | None) -> list[str]:
    """What the user runs next, exactly as they would type it."""
    as_user = f" --user {user}" if user else ""
    if ran:
        return [f"jobsheet watch {uid}{as_user}"]
    if uploaded:
        return [f"jobsheet run {uid}"]
    return [f"jobsheet upload {uid}", f"jobsheet run {uid}"]


def submit(
    calculation: Annotated[
        str, typer.Argument(help="The calculation, e.g. checksum.", metavar="CALCULATION")
    ],
    account: Annotated[str, typer.Option("--account", help="The account that pays.")],
    max_spend: Annotated[
        str, typer.Option("--max-spend", help="The most the job may cost, e.g. 5.00.")
    ],
    input_file: Annotated[
        Path | None,
        typer.Argument(
            help="The input file (only for a calculation that reads one).", metavar="INPUT"
        ),
    ] = None,
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
    """Ask for a job and pay with a cheque; print its uid, what it held, its URLs, its deadline
    and the commands to run next."""
    parameters = parse_params(param or [], params)

    async def action(client: Client) -> dict[str, Any]:
        calc = find_calculation(await client.calculations(), calculation)
        source = input_for(calc, input_file)
        job = await _submit(client, calc.name, parameters, source, account, max_spend, service)
        data = _job_data(job)
        if upload or run or not calc.reads_input:
            bars = not as_json and calc.reads_input and err_console.is_terminal
            with transfer_bars(err_console, enabled=bars) as progress:
                data["uploaded_bytes"] = await job.upload(progress=progress)
        if run:
            data["run"] = (await job.run()).model_dump(mode="json")
        data["held"] = str(job.held)
        data["next"] = next_commands(job.uid, uploaded="uploaded_bytes" in data, ran=run, user=user)
        return data

    data = with_client(cli_settings(user), action)
    if as_json:
        print_json(data)
    else:
        _show_submitted(data, account=account)


async def _submit(
    client: Client,
    calculation: str,
    parameters: dict[str, Any],
    source: Path | None,
    account: str,
    max_spend: str,
    service: str,
) -> Job:
    try:
        return await client.submit(calculation, parameters, source, account, max_spend, service)
    except NotFound as exc:
        if exc.reason != "UnknownAccount":
            raise
        raise CliError(
            f"no account {account} of yours (open one with `jobsheet account create`)",
            code=EXIT_NOT_FOUND,
        ) from None


def _job_data(job: Job) -> dict[str, Any]:
    return {
        "uid": job.uid,
        "upload_url": job.upload_url,
        "run_url": job.run_url,
        "expires_at": job.expires_at.isoformat() if job.expires_at else None,
    }


def _show_submitted(data: dict[str, Any], *, account: str) -> None:
    console.print(f"job [bold]{data['uid']}[/bold] is paid for: held {data['held']} from {account}")
    if "run" in data:
        console.print(f"run triggered: {data['run']['message'] or data['run']['state']}")
    else:
        console.print(f"run it by {data['expires_at']}, or it expires and the hold comes back")
    console.print(f"upload URL: {data['upload_url']}", soft_wrap=True)
    console.print(f"run URL:    {data['run_url']}", soft_wrap=True)
    if "uploaded_bytes" in data:
        console.print(f"uploaded {data['uploaded_bytes']} bytes")
    console.print("next:")
    for command in data["next"]:
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)
