"""How the job commands show things: progress bars, tables and a job sheet for people."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from jobsheet.jobs.models import JobSheet, JobState, output_prefix
from jobsheet.sdk import JobEvent, JobSummary, TransferProgress
from jobsheet.sdk.transfer import ProgressCallback

STATE_STYLES = {
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.TIMED_OUT: "red",
    JobState.REJECTED: "red",
    JobState.EXPIRED: "yellow",
    JobState.CANCELLED: "yellow",
}


# The states in which the job's deadline still matters: it expires unless its run is triggered.
AWAITING_RUN = (JobState.SUBMITTED, JobState.AWAITING_UPLOAD)


def parameters_json(parameters: dict[str, Any]) -> str:
    """Parameters as the JSON a user passes with ``--params``."""
    return json.dumps(parameters, sort_keys=True)


def styled(state: JobState | None) -> str:
    if state is None:
        return "?"
    style = STATE_STYLES.get(state, "cyan")
    return f"[{style}]{state.value}[/{style}]"


@contextmanager
def transfer_bars(console: Console, *, enabled: bool) -> Iterator[ProgressCallback]:
    """A progress callback that draws one bar per file (on ``console``, usually stderr)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not enabled) as progress:
        tasks: dict[str, TaskID | None] = {}

        def update(step: TransferProgress) -> None:
            if step.name not in tasks:
                tasks[step.name] = _add_transfer(progress, step, enabled=enabled)
            task = tasks[step.name]
            if task is not None:
                progress.update(task, completed=step.done)

        yield update


def _add_transfer(progress: Progress, step: TransferProgress, *, enabled: bool) -> TaskID | None:
    """A bar for a file with bytes to move; an empty file gets one line instead (a bar would
    read ``0/0 bytes ? -:--:--``)."""
    if step.total:
        return progress.add_task(step.name, total=step.total)
    if enabled:
        progress.console.print(f"{step.name}: empty", markup=False, highlight=False)
    return None


class RunBar:
    """A progress bar for a running job, fed by watch events."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("waiting", total=1.0)

    def __enter__(self) -> RunBar:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def show(self, event: JobEvent) -> None:
        if event.kind == "state":
            when = event.at.strftime("%H:%M:%S") if event.at else ""
            self.progress.console.print(f"{when} {styled(event.state)}  {event.note}")
            done = 1.0 if event.state.terminal else None
            self.progress.update(self.task, description=event.state.value, completed=done)
        elif event.progress is not None and event.progress.fraction is not None:
            self.progress.update(self.task, completed=event.progress.fraction)


def jobs_table(jobs: list[JobSummary]) -> Table:
    table = Table()
    # The uid and the state stay whole (a uid is copied, a state read at a glance); names fold.
    table.add_column("uid", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for name in ("calculation", "account", "user", "submitted"):
        table.add_column(name, overflow="fold")
    for job in jobs:
        table.add_row(
            job.uid,
            styled(job.state),
            job.calculation,
            job.account,
            job.user,
            job.submitted_at.strftime("%m-%d %H:%M") if job.submitted_at else "-",
        )
    return table


def sheet_tables(sheet: JobSheet) -> list[Table]:
    """The sheet for people: a summary, its timeline, and its outputs."""
    summary = Table.grid(padding=(0, 2))
    for name, value in _summary_rows(sheet):
        summary.add_row(f"[bold]{name}[/bold]", value)
    timeline = Table(title="timeline")
    timeline.add_column("at", no_wrap=True)
    timeline.add_column("state", no_wrap=True)
    timeline.add_column("note")
    for entry in sheet.timeline:
        timeline.add_row(entry.at.isoformat(timespec="seconds"), styled(entry.state), entry.note)
    tables = [summary, timeline]
    if sheet.outputs:
        outputs = Table("output", "bytes", "sha256", title="outputs")
        for output in sheet.outputs:
            name = output.key.removeprefix(output_prefix(sheet.uid))
            outputs.add_row(name, str(output.size), output.sha256)
        tables.append(outputs)
    return tables


def _summary_rows(sheet: JobSheet) -> list[tuple[str, str]]:
    """The sheet's summary, one (name, rich text) per row; "run by" only while it matters."""
    request = sheet.request
    rows = [
        ("job", sheet.uid),
        ("state", styled(sheet.state)),
        ("calculation", f"{request.calculation} on {request.service}" if request else "-"),
        ("parameters", escape(parameters_json(request.parameters)) if request else "-"),
        ("account / user", f"{request.account} / {request.user}" if request else "-"),
    ]
    if sheet.expires_at is not None and sheet.state in AWAITING_RUN:
        rows.append(("run by", sheet.expires_at.isoformat(timespec="seconds")))
    costs = sheet.costs
    rows.append(
        (
            "costs",
            f"quoted {costs.quoted} · held {costs.held} · "
            f"charged {costs.charged} · refunded {costs.refunded}",
        )
    )
    if sheet.usage is not None:
        rows.append(
            ("usage", f"{sheet.usage.wall_seconds:.1f}s wall, {sheet.usage.cpu_seconds:.1f}s CPU")
        )
    if sheet.progress is not None and sheet.progress.fraction is not None:
        rows.append(("progress", f"{sheet.progress.fraction:.0%}"))
    if sheet.error:
        rows.append(("error", escape(sheet.error)))
    return rows
