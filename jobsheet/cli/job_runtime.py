"""Running SDK calls for the job commands: connect, run, and map SDK errors to exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from jobsheet.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    CliError,
)
from jobsheet.sdk import (
    BadInput,
    Client,
    JobsheetError,
    NotFound,
    Refused,
    RunRefused,
    Unavailable,
)
from jobsheet.settings import Settings, load_settings

T = TypeVar("T")


def exit_code_for(error: JobsheetError) -> int:
    """The CLI exit code that says what kind of failure ``error`` is."""
    if isinstance(error, RunRefused):
        return EXIT_NOT_FOUND if error.status == 404 else EXIT_REFUSED
    if isinstance(error, BadInput):
        return EXIT_BAD_INPUT
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, Refused):
        return EXIT_REFUSED
    if isinstance(error, Unavailable):
        return EXIT_UNAVAILABLE
    return EXIT_FAILURE


def cli_settings(user: str | None = None) -> Settings:
    """Settings from ``JOBSHEET_*``, acting as ``user`` when one is named."""
    settings = load_settings()
    return settings.model_copy(update={"user": user}) if user else settings


def run_async(action: Awaitable[T]) -> T:
    """Run a coroutine, turning SDK errors into one-line CLI errors with a meaningful code."""

    async def main() -> T:
        try:
            return await action
        except JobsheetError as exc:
            raise CliError(exc.message, code=exit_code_for(exc)) from None

    return asyncio.run(main())


def with_client(settings: Settings, action: Callable[[Client], Awaitable[T]]) -> T:
    """Connect the SDK client with ``settings`` and run ``action`` with it."""

    async def main() -> T:
        client = await Client.connect(settings)
        return await action(client)

    return run_async(main())
