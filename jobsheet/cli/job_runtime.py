"""Running SDK calls for the commands: make a client, run, and map SDK errors to exit codes."""

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
from jobsheet.core.settings import Settings, load_settings
from jobsheet.identity.keys import Identity, IdentityError
from jobsheet.ledger.orders import load_operator
from jobsheet.sdk import (
    BadInput,
    Client,
    JobsheetError,
    NotFound,
    Refused,
    RunRefused,
    Unavailable,
)

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


def operator_identity(settings: Settings) -> Identity:
    """The operator's key (``JOBSHEET_OPERATOR_USER``): from the config dir, else from the state
    dir where ``jobsheet stack up`` keeps it."""
    try:
        return load_operator(
            settings.operator_user, config_dir=settings.config_dir, state_dir=settings.state_dir
        )
    except IdentityError as exc:
        raise CliError(str(exc), code=EXIT_BAD_INPUT) from None


def run_async(action: Awaitable[T]) -> T:
    """Run a coroutine, turning SDK errors into one-line CLI errors with a meaningful code."""

    async def main() -> T:
        try:
            return await action
        except JobsheetError as exc:
            raise CliError(exc.message, code=exit_code_for(exc)) from None

    return asyncio.run(main())


def with_client(
    settings: Settings,
    action: Callable[[Client], Awaitable[T]],
    *,
    identity: Identity | None = None,
) -> T:
    """Run ``action`` with an SDK client for ``settings`` (signing as ``identity`` when given,
    else as ``settings.user``), closed afterwards."""

    async def main() -> T:
        async with await Client.connect(settings, identity=identity) as client:
            return await action(client)

    return run_async(main())
