"""A handle on one job: upload its input, run it, watch it, fetch its result and outputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jobsheet.authorisation import sign_authorisation
from jobsheet.jobs.client import cancel_job, download_pars
from jobsheet.jobs.messages import cancel_resource
from jobsheet.jobs.models import JobSheet, JobState, output_prefix
from jobsheet.sdk.errors import BadInput
from jobsheet.sdk.events import JobEvent
from jobsheet.sdk.run_par import RunTriggered, call_run_par
from jobsheet.sdk.service_errors import service_call
from jobsheet.sdk.sheets import fetch_sheet
from jobsheet.sdk.transfer import ProgressCallback, download_file, output_path, upload_file

if TYPE_CHECKING:
    from jobsheet.sdk.client import Client


class Job:
    """One job of a :class:`~jobsheet.sdk.Client`.

    ``upload_url`` and ``run_url`` are the job's PARs: known to the client that submitted it (and
    kept in the user's config directory), never recorded in the job sheet.
    """

    def __init__(
        self,
        client: Client,
        uid: str,
        *,
        upload_url: str | None = None,
        run_url: str | None = None,
        expires_at: datetime | None = None,
        input_path: Path | None = None,
    ) -> None:
        self.client = client
        self.uid = uid
        self.upload_url = upload_url
        self.run_url = run_url
        self.expires_at = expires_at
        self.input_path = input_path

    def __repr__(self) -> str:
        return f"Job({self.uid!r})"

    async def sheet(self) -> JobSheet:
        """The job sheet as it stands now (with live run progress while it runs)."""
        return await fetch_sheet(self.client.temporal, self.client.settings, self.uid)

    async def upload(
        self, path: Path | str | None = None, *, progress: ProgressCallback | None = None
    ) -> int:
        """Stream the input through the upload PAR; ``progress`` is called for every chunk."""
        if self.upload_url is None:
            raise BadInput(f"no upload PAR is known for job {self.uid} on this machine")
        source = Path(path) if path is not None else self.input_path
        if source is None:
            raise BadInput(f"name the input file to upload for job {self.uid}")
        return await upload_file(self.upload_url, source, progress=progress)

    async def run(self) -> RunTriggered:
        """Trigger the run by POSTing the run PAR URL to the PAR gateway."""
        if self.run_url is None:
            raise BadInput(f"no run PAR is known for job {self.uid} on this machine")
        return await call_run_par(self.run_url)

    async def watch(self, interval: float = 0.5) -> AsyncGenerator[JobEvent, None]:
        """Yield every new timeline entry, in order, and each run progress change; end after the
        terminal state. States are read from the sheet's timeline, so none is ever missed."""
        seen = 0
        last_progress = None
        while True:
            sheet = await self.sheet()
            for entry in sheet.timeline[seen:]:
                yield JobEvent(
                    kind="state",
                    uid=self.uid,
                    state=entry.state,
                    at=entry.at,
                    note=entry.note,
                    sheet=sheet,
                )
            seen = len(sheet.timeline)
            if sheet.terminal:
                return
            running = sheet.state == JobState.RUNNING
            if running and sheet.progress is not None and sheet.progress != last_progress:
                last_progress = sheet.progress
                yield JobEvent(
                    kind="progress",
                    uid=self.uid,
                    state=sheet.state,
                    at=datetime.now(UTC),
                    progress=sheet.progress,
                    sheet=sheet,
                )
            await asyncio.sleep(interval)

    async def result(self, interval: float = 0.5) -> JobSheet:
        """Wait until the job ends and return its final sheet."""
        final: JobSheet | None = None
        async for event in self.watch(interval):
            final = event.sheet
        assert final is not None
        return final

    async def download(
        self, directory: Path | str, *, progress: ProgressCallback | None = None
    ) -> list[Path]:
        """Download every output into ``directory`` (paths relative to the output prefix),
        verifying each one's size and sha256 against the manifest; return the paths."""
        with service_call("getting download PARs", uid=self.uid):
            pars = await download_pars(self.client.temporal, self.uid)
        target = Path(directory)
        prefix = output_prefix(self.uid)
        paths = []
        for par in pars.pars:
            paths.append(
                await download_file(
                    par.url,
                    output_path(target, par.key, prefix),
                    size=par.size,
                    sha256=par.sha256,
                    progress=progress,
                )
            )
        return paths

    async def cancel(self, reason: str = "cancelled by the owner") -> JobSheet:
        """Cancel the job as its owner; returns the final sheet once compensation is done."""
        identity = self.client.identity
        authorisation = sign_authorisation(identity, cancel_resource(self.uid))
        with service_call("cancelling the job", uid=self.uid):
            return await cancel_job(self.client.temporal, self.uid, authorisation, reason=reason)
