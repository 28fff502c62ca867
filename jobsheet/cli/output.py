"""Printing for the CLI: rich for people, ``--json`` for scripts.

On a terminal rich fits lines to its width; anywhere else (a pipe, a file, a test) a line is
never wrapped, so ``grep`` and ``cut`` see whole words and whole URLs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Wide enough that no table is folded when output is not a terminal.
UNWRAPPED_WIDTH = 1000


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that wraps only on a terminal."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=UNWRAPPED_WIDTH)
    return console


console = make_console()
err_console = make_console(stderr=True)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout (the one thing a ``--json`` command prints there)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def heading(text: str) -> None:
    """A section heading: a rule across a terminal, a plain line anywhere else."""
    if console.is_terminal:
        console.rule(text)
    else:
        console.print(f"== {text} ==", markup=False, highlight=False)
