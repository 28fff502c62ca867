"""One Temporal client per event loop, connected on first use (uvicorn's loop, or a test's)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine

from temporalio.client import Client

from jobsheet.core.settings import Settings
from jobsheet.core.temporal import connect

Connect = Callable[[Settings], Coroutine[object, object, Client]]


class TemporalClients:
    """Connects lazily, so the API starts (and answers its health check) before Temporal does."""

    def __init__(self, settings: Settings, connector: Connect = connect) -> None:
        self._settings = settings
        self._connect = connector
        self._tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Client]]
        self._tasks = weakref.WeakKeyDictionary()

    async def get(self) -> Client:
        loop = asyncio.get_running_loop()
        task = self._tasks.get(loop)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = loop.create_task(self._connect(self._settings))
            self._tasks[loop] = task
        # Shielded: a caller that goes away does not cancel the connection others wait for.
        return await asyncio.shield(task)
