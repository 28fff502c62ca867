"""Compute service activities: run a contracted calculation in isolation.

They run on the service's task queue (``settings.compute_task_queue(service)``) in workers that
hold no storage credentials: input arrives through a read PAR (presigned GET) and outputs leave
through the bucket-write PAR, exchanged at the PAR gateway for one presigned PUT per key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
from temporalio import activity
from temporalio.client import Client

from activities import contract_book
from jobsheet.compute.config import (
    BadParametersError,
    Calculation,
    ComputeConfig,
    UnknownCalculationError,
)
from jobsheet.compute.models import (
    RUN_ACTIVITY,
    ComputeContract,
    ContractRecord,
    ContractState,
    OutputObject,
    RunPhase,
    RunProgress,
    RunRequest,
    RunResult,
    RunStatus,
    Usage,
)
from jobsheet.compute.runner import Limits, ProcessOutcome, run_isolated
from jobsheet.compute.sandbox import Sandbox, calculations_for
from jobsheet.contracts.refusals import refusal
from jobsheet.pars.write import BadOutputKey, WritePar, check_relative_key
from jobsheet.telemetry.job_metrics import observe_queue_wait, observe_run, run_in_progress

T = TypeVar("T")
CONTRACT_SLOTS = 4
"""Activity slots per worker beyond the run slots: runs waiting for a run slot heartbeat."""
STDERR_TAIL_BYTES = 4096
CHUNK = 1 << 20
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class ComputeActivities:
    """The activities of one compute service, created once per worker."""

    def __init__(
        self,
        *,
        client: Client,
        config: ComputeConfig,
        service: str,
        task_queue: str,
        sandbox: Sandbox | None = None,
    ) -> None:
        # httpx logs request URLs at INFO, and presigned URLs are secrets.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._client = client
        self._config = config
        self._service = config.service(service)
        self._task_queue = task_queue
        self._run_slots = asyncio.Semaphore(self._service.max_concurrent_runs)
        # Who calculations run as and where (worker.py prepares it at start: see sandbox.py).
        self._sandbox = sandbox or Sandbox()
        self._http: httpx.AsyncClient | None = None

    def _http_client(self) -> httpx.AsyncClient:
        """One HTTP client for every run of this worker, made at the first run (on the worker's
        event loop): a client per run cost an SSL context and a connection each time."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT)
        return self._http

    @property
    def max_concurrent_activities(self) -> int:
        """What the worker should allow: every run slot plus a few for contracts."""
        return self._service.max_concurrent_runs + CONTRACT_SLOTS

    def _calculation(self, name: str, parameters: dict) -> tuple[Calculation, dict]:
        try:
            calculation = self._config.calculation(name, service=self._service.name)
        except UnknownCalculationError as exc:
            raise refusal(str(exc), "UnknownCalculation") from None
        try:
            return calculation, calculation.validate_parameters(parameters)
        except BadParametersError as exc:
            raise refusal(str(exc), "BadParameters") from None

    async def _held_record(self, contract: ComputeContract) -> ContractRecord:
        record = await contract_book.contract_record(
            self._client, contract.contract_id, task_queue=self._task_queue
        )
        state = record.state_at(datetime.now(UTC)) if record else None
        if record is None or state != ContractState.HELD:
            said = state.value if state else "unknown"
            raise refusal(f"contract {contract.contract_id} is {said}", "ContractNotHeld")
        if not secrets.compare_digest(record.contract.run_token, contract.run_token):
            raise refusal("the contract does not match the service's record", "ContractNotHeld")
        return record

    # --- running ----------------------------------------------------------------------------

    @activity.defn(name=RUN_ACTIVITY)
    async def run_calculation(self, request: RunRequest) -> RunResult:
        """Download the input, run the calculation in isolation, upload every output.

        Heartbeats a :class:`RunProgress` dict every few seconds. Each attempt starts from
        scratch and writes the same keys, so a retry overwrites rather than duplicates.
        """
        contract = request.contract
        if contract.service != self._service.name:
            raise refusal(
                f"contract is for service {contract.service!r}, not {self._service.name!r}",
                "WrongService",
            )
        calculation, parameters = self._calculation(contract.calculation, contract.parameters)
        # The contract book may answer slowly (its worker may just have died): keep beating.
        await self._heartbeating(self._held_record(contract))
        slot = asyncio.ensure_future(self._run_slots.acquire())
        try:
            await self._heartbeating(slot)
        except BaseException:
            # Cancelled just as the slot was granted: give it back.
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                self._run_slots.release()
            raise
        observe_queue_wait(self._service.name, activity.info().current_attempt_scheduled_time)
        try:
            with self._sandbox.run_directory() as root, run_in_progress(self._service.name):
                return await self._run_in(root, request, calculation, parameters)
        finally:
            self._run_slots.release()

    async def _heartbeating(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, heartbeating WAITING progress every few seconds meanwhile."""
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                activity.heartbeat(RunProgress(phase=RunPhase.WAITING).model_dump(mode="json"))
                done, _ = await asyncio.wait({task}, timeout=self._service.heartbeat_seconds)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()

    async def _run_in(
        self, root: Path, request: RunRequest, calculation: Calculation, parameters: dict
    ) -> RunResult:
        contract = request.contract
        input_dir, output_dir, log_dir = root / "input", root / "out", root / "logs"
        for directory in (input_dir, output_dir, log_dir):
            directory.mkdir(mode=0o700)
        input_path = input_dir / request.input_name
        heartbeat = _Heartbeat(self._service.heartbeat_seconds)
        http = self._http_client()
        await _download(http, request.input.url, input_path, heartbeat)
        calculations_dir = await asyncio.to_thread(
            calculations_for, self._sandbox.user, self._config.base_dir, root
        )
        argv = calculation.render_argv(
            parameters,
            input_path=input_path,
            output_dir=output_dir,
            base_dir=calculations_dir,
            python=self._sandbox.user.python,
        )
        limits = Limits(
            wall_seconds=contract.max_runtime_seconds,
            cpu_seconds=calculation.cpu_seconds,
            memory_bytes=calculation.memory_bytes,
            file_bytes=contract.max_output_bytes,
            processes=calculation.max_processes,
            output_bytes=contract.max_output_bytes,
        )
        stdout_path, stderr_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
        outcome = await run_isolated(
            argv,
            run_dir=root,
            output_dir=output_dir,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            limits=limits,
            heartbeat_seconds=self._service.heartbeat_seconds,
            on_progress=lambda progress: activity.heartbeat(progress.model_dump(mode="json")),
            sandbox=self._sandbox,
        )
        status = _status(outcome)
        observe_run(contract.service, contract.calculation, status.value, outcome.wall_seconds)
        outputs: list[OutputObject] = []
        skipped: list[str] = []
        if status != RunStatus.OUTPUT_TOO_LARGE:
            files = [
                ("stdout.txt", stdout_path, "stdout"),
                ("stderr.txt", stderr_path, "stderr"),
            ]
            produced, skipped = _output_files(output_dir)
            files += [("files/" + rel, path, "file") for rel, path in produced]
            for relative, path, kind in files:
                outputs.append(await _upload(http, request.output, relative, path, kind, heartbeat))
        return RunResult(
            contract_id=contract.contract_id,
            status=status,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            usage=Usage(
                wall_seconds=round(outcome.wall_seconds, 3),
                cpu_seconds=round(outcome.cpu_seconds, 3),
            ),
            stderr_tail=_tail(stderr_path),
            outputs=outputs,
            skipped_outputs=skipped,
            attempt=activity.info().attempt,
        )


def _status(outcome: ProcessOutcome) -> RunStatus:
    if outcome.output_too_large:
        return RunStatus.OUTPUT_TOO_LARGE
    if outcome.timed_out:
        return RunStatus.TIMED_OUT
    if outcome.exit_code == 0:
        return RunStatus.SUCCEEDED
    return RunStatus.FAILED


def _output_files(output_dir: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Regular files under ``output_dir``, sorted, and the names that cannot be object keys.

    Symlinks, devices and sockets are never uploaded; nor are files whose names contain
    backslashes or control characters, which are listed instead.
    """
    found, skipped = [], []
    for root, dirs, files in os.walk(output_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(output_dir).as_posix()
            try:
                check_relative_key("files/" + relative)
            except BadOutputKey:
                skipped.append(relative.encode("unicode_escape").decode())
                continue
            found.append((relative, path))
    return found, skipped


def _file_size(path: Path) -> int:
    return path.stat().st_size


def _tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - STDERR_TAIL_BYTES))
        return handle.read().decode(errors="replace")


class _Heartbeat:
    """Heartbeats at most every ``seconds`` while downloading and uploading."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._last = 0.0
        self._loop = asyncio.get_running_loop()

    def beat(self, phase: RunPhase, done_bytes: int) -> None:
        now = self._loop.time()
        if now - self._last >= self._seconds:
            self._last = now
            activity.heartbeat(
                RunProgress(phase=phase, output_bytes=done_bytes).model_dump(mode="json")
            )


async def _download(http: httpx.AsyncClient, url: str, path: Path, heartbeat: _Heartbeat) -> None:
    heartbeat.beat(RunPhase.DOWNLOADING, 0)
    async with http.stream("GET", url) as response:
        if response.status_code == 404:
            raise refusal("the input has not been uploaded (no such object)", "InputMissing")
        if response.status_code == 403:
            raise refusal("the input read PAR was refused (expired or invalid)", "InputParRefused")
        response.raise_for_status()
        received = 0
        with path.open("wb") as handle:
            async for chunk in response.aiter_bytes(CHUNK):
                handle.write(chunk)
                received += len(chunk)
                heartbeat.beat(RunPhase.DOWNLOADING, received)


async def _upload(
    http: httpx.AsyncClient,
    par: WritePar,
    relative: str,
    path: Path,
    kind: str,
    heartbeat: _Heartbeat,
) -> OutputObject:
    """Exchange the bucket-write PAR for a presigned PUT of one key, then stream the file."""
    exchange = await http.post(par.url, json={"key": relative})
    if exchange.status_code in (400, 403, 404, 410):
        raise refusal(
            f"the bucket-write PAR refused {relative!r}: {exchange.text}", "OutputParRefused"
        )
    exchange.raise_for_status()
    grant = exchange.json()
    size = _file_size(path)
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                sent += len(chunk)
                heartbeat.beat(RunPhase.UPLOADING, sent)
                yield chunk

    put = await http.put(grant["url"], content=body(), headers={"Content-Length": str(size)})
    put.raise_for_status()
    return OutputObject(key=grant["key"], size=size, sha256=digest.hexdigest(), kind=kind)
