"""How the CLI shows things, without servers: tables that keep words whole, bars that make
sense for empty files, calculations described and suggested, the next commands."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console

from jobsheet.cli.calculations_cmd import describe_parameters, find_calculation
from jobsheet.cli.errors import EXIT_BAD_INPUT, CliError
from jobsheet.cli.job_views import jobs_table, sheet_tables, transfer_bars
from jobsheet.cli.output import UNWRAPPED_WIDTH, make_console
from jobsheet.cli.submit_cmd import next_commands
from jobsheet.contracts.api import CalculationList, CalculationView, JobSummary
from jobsheet.jobs.models import JobRequest, JobSheet, JobState
from jobsheet.sdk import TransferProgress

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def render(*renderables: object, width: int = 80, terminal: bool = True) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminal, color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()


def test_a_pipe_is_never_wrapped() -> None:
    console = make_console()  # pytest captures stdout: not a terminal
    assert not console.is_terminal
    assert console.soft_wrap and console.width == UNWRAPPED_WIDTH


def test_narrow_job_list_keeps_words_whole() -> None:
    jobs = [
        JobSummary(
            uid="job-" + "a" * 32,
            state=JobState.SUCCEEDED,
            account="alice-lab-with-a-long-name",
            user="alice-with-a-long-name",
            calculation="monte-carlo-pi",
            submitted_at=NOW,
        )
    ]
    text = render(jobs_table(jobs), width=80)
    assert "job-" + "a" * 32 in text
    assert "succeeded" in text
    assert "succe\n" not in text


def sheet(state: JobState) -> JobSheet:
    request = JobRequest(
        calculation="monte-carlo-pi",
        service="standard",
        parameters={"samples": 1000, "seed": 1},
        input_size=0,
        input_sha256="0" * 64,
        account="alice-lab",
        user="alice",
    )
    return JobSheet(
        uid="job-" + "b" * 32, state=state, request=request, expires_at=NOW + timedelta(hours=1)
    )


def test_sheet_shows_parameters_as_json_and_a_deadline_only_while_it_matters() -> None:
    waiting = render(*sheet_tables(sheet(JobState.AWAITING_UPLOAD)), width=120)
    assert '{"samples": 1000, "seed": 1}' in waiting
    assert "run by" in waiting and "2026-11-28T13:00:00" in waiting
    for state in (JobState.RUNNING, JobState.SUCCEEDED, JobState.EXPIRED):
        assert "run by" not in render(*sheet_tables(sheet(state)), width=120)


def test_an_empty_file_gets_no_bar() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=True, color_system=None)
    with transfer_bars(console, enabled=True) as progress:
        progress(TransferProgress("stderr.txt", 0, 0))
        progress(TransferProgress("stderr.txt", 0, 0))
        progress(TransferProgress("pi.json", 10, 10))
    text = buffer.getvalue()
    assert text.count("stderr.txt: empty") == 1
    assert "0/0" not in text and "-:--:--" not in text.split("pi.json")[0]


def calculation(name: str, **schema: object) -> CalculationView:
    return CalculationView(
        name=name,
        description="",
        services=["standard"],
        parameters={"type": "object", **schema},
        reads_input=True,
        price_per_second=Decimal("0.01"),
        fee=Decimal("0.05"),
        max_runtime_seconds=300,
        quote=Decimal("3.05"),
    )


def test_parameters_with_types_and_defaults() -> None:
    schema = {
        "required": ["samples"],
        "properties": {
            "seed": {"type": "integer", "default": 1},
            "samples": {"type": "integer"},
            "label": {"type": "string", "default": "pi"},
        },
    }
    assert describe_parameters(schema) == (
        'seed (integer) = 1, samples* (integer), label (string) = "pi"'
    )
    assert describe_parameters({"type": "object", "properties": {}}) == "-"


def test_a_mistyped_calculation_gets_a_suggestion_and_the_list() -> None:
    offer = CalculationList(
        calculations=[calculation("checksum"), calculation("text-stats")], payee="provider"
    )
    assert find_calculation(offer, "checksum").name == "checksum"
    with pytest.raises(CliError) as typo:
        find_calculation(offer, "text-stat")
    assert typo.value.code == EXIT_BAD_INPUT
    assert "did you mean text-stats?" in str(typo.value)
    assert "calculations: checksum, text-stats" in str(typo.value)
    with pytest.raises(CliError) as unlike:
        find_calculation(offer, "zzz")
    assert "did you mean" not in str(unlike.value)


def test_next_commands() -> None:
    uid = "job-1"
    assert next_commands(uid, uploaded=False, ran=False, user=None) == [
        "jobsheet upload job-1",
        "jobsheet run job-1",
    ]
    assert next_commands(uid, uploaded=True, ran=False, user="bob") == ["jobsheet run job-1"]
    assert next_commands(uid, uploaded=True, ran=True, user="bob") == [
        "jobsheet watch job-1 --user bob"
    ]
