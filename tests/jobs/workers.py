"""Worker helpers for job tests that stop part of the deployment while a job is in flight."""

from __future__ import annotations

import asyncio
import concurrent.futures

from temporalio.client import Client
from temporalio.worker import Worker

from jobsheet.core.settings import Settings
from worker import ledger_workers


class LedgerWorker:
    """The ledger worker in this process, stoppable to hold a job at a ledger step."""

    def __init__(self, client: Client, settings: Settings, executor: concurrent.futures.Executor):
        self.client, self.settings, self.executor = client, settings, executor
        self.worker: Worker | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        (self.worker,) = ledger_workers(self.client, self.settings, self.executor)
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        if self.worker is not None and self.task is not None:
            await self.worker.shutdown()
            await self.task
            self.worker = self.task = None
