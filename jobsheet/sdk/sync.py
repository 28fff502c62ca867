"""Blocking wrappers of the SDK for scripts: the async client runs on a background event loop.

    with SyncClient.connect(user="alice") as client:
        job = client.submit("checksum", {}, "data.bin", account="acct-1", max_spend="5.00")
        job.upload()
        job.run()
        for event in job.watch():
            print(event.state)

One loop thread per client: the client's HTTP connections belong to the loop they were made on,
so every call goes to that same loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from jobsheet.contracts.api import CalculationList, JobSummary, StatementView, UserView
from jobsheet.core.settings import Settings
from jobsheet.identity.keys import Identity, PublicKeyRecord
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.ledger.models import BalanceView
from jobsheet.sdk.client import Client
from jobsheet.sdk.events import JobEvent
from jobsheet.sdk.job import Job
from jobsheet.sdk.run_par import RunTriggered
from jobsheet.sdk.transfer import ProgressCallback

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread, to which coroutines are submitted."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="jobsheet-sdk", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


class SyncJob:
    """The blocking face of :class:`~jobsheet.sdk.Job`."""

    def __init__(self, job: Job, runner: _LoopThread) -> None:
        self.job = job
        self._runner = runner

    @property
    def uid(self) -> str:
        return self.job.uid

    @property
    def upload_url(self) -> str | None:
        return self.job.upload_url

    @property
    def run_url(self) -> str | None:
        return self.job.run_url

    @property
    def held(self) -> Decimal | None:
        return self.job.held

    def sheet(self) -> JobSheet:
        return self._runner.run(self.job.sheet())

    def upload(
        self, path: Path | str | None = None, *, progress: ProgressCallback | None = None
    ) -> int:
        return self._runner.run(self.job.upload(path, progress=progress))

    def run(self) -> RunTriggered:
        return self._runner.run(self.job.run())

    def watch(self, interval: float = 0.5) -> Iterator[JobEvent]:
        events = self.job.watch(interval)

        async def next_event() -> JobEvent:
            return await events.__anext__()

        try:
            while True:
                try:
                    yield self._runner.run(next_event())
                except StopAsyncIteration:
                    return
        finally:
            self._runner.run(events.aclose())

    def result(self, interval: float = 0.5) -> JobSheet:
        return self._runner.run(self.job.result(interval))

    def download(
        self, directory: Path | str, *, progress: ProgressCallback | None = None
    ) -> list[Path]:
        return self._runner.run(self.job.download(directory, progress=progress))

    def cancel(self, reason: str = "cancelled by the owner") -> JobSheet:
        return self._runner.run(self.job.cancel(reason))


class SyncClient:
    """The blocking face of :class:`~jobsheet.sdk.Client`; close it (or use ``with``) when done."""

    def __init__(self, client: Client, runner: _LoopThread) -> None:
        self.client = client
        self._runner = runner

    @classmethod
    def connect(
        cls,
        settings: Settings | None = None,
        user: str | None = None,
        *,
        identity: Identity | None = None,
    ) -> SyncClient:
        runner = _LoopThread()
        try:
            client = runner.run(Client.connect(settings, user, identity=identity))
        except BaseException:
            runner.stop()
            raise
        return cls(client, runner)

    def close(self) -> None:
        try:
            self._runner.run(self.client.aclose())
        finally:
            self._runner.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def submit(
        self,
        calculation: str,
        params: dict[str, Any] | None,
        input_path: Path | str | None,
        account: str,
        max_spend: str | int,
        service: str = "standard",
    ) -> SyncJob:
        job = self._runner.run(
            self.client.submit(calculation, params, input_path, account, max_spend, service)
        )
        return SyncJob(job, self._runner)

    def job(self, uid: str) -> SyncJob:
        return SyncJob(self.client.job(uid), self._runner)

    def load(self, uid: str) -> JobSheet:
        return self._runner.run(self.client.load(uid))

    def list_jobs(
        self,
        state: JobState | str | None = None,
        account: str | None = None,
        user: str | None = None,
    ) -> list[JobSummary]:
        return self._runner.run(self.client.list_jobs(state=state, account=account, user=user))

    def signup(self, name: str | None = None) -> UserView:
        return self._runner.run(self.client.signup(name))

    def keys(self, name: str | None = None) -> UserView:
        return self._runner.run(self.client.keys(name))

    def add_key(self, public_key: str, *, retire_others: bool = False) -> UserView:
        return self._runner.run(self.client.add_key(public_key, retire_others=retire_others))

    def rotate_key(self) -> UserView:
        return self._runner.run(self.client.rotate_key())

    def revoke_key(self, key_id: str, *, user: str | None = None) -> PublicKeyRecord:
        return self._runner.run(self.client.revoke_key(key_id, user=user))

    def open_account(self, account: str | None = None) -> BalanceView:
        return self._runner.run(self.client.open_account(account))

    def balance(self, account: str) -> BalanceView:
        return self._runner.run(self.client.balance(account))

    def statement(self, account: str, *, limit: int = 50) -> StatementView:
        return self._runner.run(self.client.statement(account, limit=limit))

    def deposit(
        self,
        account: str,
        amount: Decimal | int | str,
        *,
        idempotency_key: str | None = None,
        reference: str = "",
    ) -> BalanceView:
        return self._runner.run(
            self.client.deposit(
                account, amount, idempotency_key=idempotency_key, reference=reference
            )
        )

    def calculations(self) -> CalculationList:
        return self._runner.run(self.client.calculations())
