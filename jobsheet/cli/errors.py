"""Errors the CLI reports as one readable line, with an exit code that means something."""

from __future__ import annotations

# Exit codes: 0 ok, 1 unexpected failure, 2 usage / bad input, 3 refused by the service,
# 4 not found, 5 stack or server not available.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5


class CliError(Exception):
    """A failure the user can act on: printed as ``error: <message>`` and exits with ``code``."""

    def __init__(self, message: str, *, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code
