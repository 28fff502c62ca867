"""A handle on one job: upload its input, run it, watch it, fetch its result and outputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import httpx
from pydantic import ValidationError

from jobsheet.contracts.api import CancelRequest, WatchEvent
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.identity.keys import Identity
from jobsheet.jobs.messages import DownloadPars, cancel_resource
from jobsheet.jobs.models import JobSheet, JobState, output_prefix
from jobsheet.sdk.api_errors import stream_error
from jobsheet.sdk.errors import BadInput, JobsheetError, Unavailable
from jobsheet.sdk.events import JobEvent
from jobsheet.sdk.run_par import RunTriggered, call_run_par
from jobsheet.sdk.session import ApiSession
from jobsheet.sdk.sse import parse_events
from jobsheet.sdk.transfer import (
    ProgressCallback,
    download_file,
    output_path,
    upload_file,
    upload_nothing,
)

StateKey = tuple[JobState, datetime | None, str]


class JobOwner(Protocol):
    """What a job needs of its :class:`~jobsheet.sdk.Client`: the API, the user's key, sheets."""

    api: ApiSession

    @property
    def identity(self) -> Identity: ...

    async def load(self, uid: str) -> JobSheet: ...


class Job:
    """One job of a :class:`~jobsheet.sdk.Client`.

    ``upload_url`` and ``run_url`` are the job's PARs: known to the client that submitted it (and
    kept in the user's config directory), never recorded in the job sheet.
    """

    def __init__(
        self,
        client: JobOwner,
        uid: str,
        *,
        upload_url: str | None = None,
        run_url: str | None = None,
        expires_at: datetime | None = None,
        input_path: Path | None = None,
        no_input: bool = False,
        held: Decimal | None = None,
    ) -> None:
        self.client = client
        self.uid = uid
        self.upload_url = upload_url
        self.run_url = run_url
        self.expires_at = expires_at
        self.input_path = input_path
        self.no_input = no_input
        """The calculation reads no input: :meth:`upload` sends an empty object."""
        self.held = held
        """What the cheque held for the job when it was submitted (None for a job reattached
        by uid: read its sheet's ``costs``)."""

    def __repr__(self) -> str:
        return f"Job({self.uid!r})"

    async def sheet(self) -> JobSheet:
        """The job sheet as it stands now (with live run progress while it runs)."""
        return await self.client.load(self.uid)

    async def upload(
        self, path: Path | str | None = None, *, progress: ProgressCallback | None = None
    ) -> int:
        """Stream the input through the upload PAR; ``progress`` is called for every chunk. A job
        submitted without an input uploads an empty object."""
        if self.upload_url is None:
            raise BadInput(f"no upload PAR is known for job {self.uid} on this machine")
        source = Path(path) if path is not None else self.input_path
        if source is None and self.no_input:
            return await upload_nothing(self.upload_url)
        if source is None:
            raise BadInput(f"name the input file to upload for job {self.uid}")
        return await upload_file(self.upload_url, source, progress=progress)

    async def run(self) -> RunTriggered:
        """Trigger the run by POSTing the run PAR URL (no credential but the URL)."""
        if self.run_url is None:
            raise BadInput(f"no run PAR is known for job {self.uid} on this machine")
        return await call_run_par(self.run_url)

    async def watch(self, interval: float = 0.5) -> AsyncGenerator[JobEvent, None]:
        """Yield every state the job enters, in order, and each run progress step; end after
        the terminal state.

        Follows the API's event stream (``GET /v1/jobs/{uid}/events``). A state event carries
        the sheet read just after it; a progress event carries the last sheet with the new
        progress. If the stream breaks before the end, the states it missed are taken from the
        sheet's timeline and the stream is opened again after ``interval`` seconds; states
        already yielded are never yielded twice.
        """
        seen: set[StateKey] = set()
        sheet: JobSheet | None = None
        drops = 0
        while True:
            try:
                async for change in self._stream():
                    drops = 0
                    if change.kind == "state":
                        key = (change.state, change.at, change.note)
                        if key in seen:
                            continue
                        seen.add(key)
                        sheet = await self.sheet()
                        yield self._event(change, sheet)
                        if change.state.terminal:
                            return
                    else:
                        if sheet is None:
                            sheet = await self.sheet()
                        sheet = sheet.model_copy(update={"progress": change.progress})
                        yield self._event(change, sheet)
            except Unavailable:
                drops += 1
                if drops >= self.client.api.retry.attempts:
                    raise
            # The stream ended (or broke) before the terminal state: catch up from the sheet.
            sheet = await self.sheet()
            for entry in sheet.timeline:
                key = (entry.state, entry.at, entry.note)
                if key not in seen:
                    seen.add(key)
                    yield JobEvent(
                        kind="state",
                        uid=self.uid,
                        state=entry.state,
                        at=entry.at,
                        note=entry.note,
                        sheet=sheet,
                    )
            if sheet.terminal:
                return
            await asyncio.sleep(interval)

    def _event(self, change: WatchEvent, sheet: JobSheet) -> JobEvent:
        return JobEvent(
            kind=change.kind,
            uid=self.uid,
            state=change.state,
            at=change.at,
            note=change.note,
            progress=change.progress,
            sheet=sheet,
        )

    async def _stream(self) -> AsyncIterator[WatchEvent]:
        """The job's changes as the API streams them; :class:`Unavailable` when it breaks."""
        what = f"watching job {self.uid}"
        async with self.client.api.stream(
            f"/v1/jobs/{self.uid}/events", what=what, missing=f"job {self.uid} does not exist"
        ) as response:
            try:
                async for event in parse_events(response.aiter_lines()):
                    if event.event == "error":
                        raise stream_error(event.data, what=what, uid=self.uid)
                    if event.event not in ("state", "progress"):
                        continue
                    try:
                        yield WatchEvent.model_validate_json(event.data)
                    except ValidationError as exc:
                        raise JobsheetError(
                            f"{what}: the API sent an event that is not a WatchEvent ({exc})",
                            reason="BadAnswer",
                        ) from None
            except httpx.TransportError as exc:
                raise self.client.api.unreachable(what, exc) from None

    async def result(self, interval: float = 0.5) -> JobSheet:
        """Wait until the job ends and return its final sheet."""
        final: JobSheet | None = None
        async for event in self.watch(interval):
            final = event.sheet
        if final is None or not final.terminal:
            final = await self.sheet()
        return final

    async def download(
        self, directory: Path | str, *, progress: ProgressCallback | None = None
    ) -> list[Path]:
        """Download every output into ``directory`` (paths relative to the output prefix),
        verifying each one's size and sha256 against the manifest; return the paths."""
        answer = await self.client.api.call(
            "POST",
            f"/v1/jobs/{self.uid}/downloads",
            what=f"getting download PARs for job {self.uid}",
            missing=f"job {self.uid} does not exist",
        )
        pars = answer.parse(DownloadPars)
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
        """Cancel the job as its owner; returns the final sheet once compensation is done.

        Cancelling a job that already ended as cancelled answers its sheet again, so a cancel
        whose answer was lost is simply sent again."""
        authorisation = sign_authorisation(self.client.identity, cancel_resource(self.uid))
        answer = await self.client.api.call(
            "POST",
            f"/v1/jobs/{self.uid}/cancel",
            body=CancelRequest(authorisation=authorisation, reason=reason),
            what=f"cancelling job {self.uid}",
            missing=f"job {self.uid} does not exist",
        )
        return answer.parse(JobSheet)
