"""A directory every user may write, for the markers test calculations leave.

When the tests run as root, calculations run as an unprivileged user (jobsheet/compute/sandbox.py),
who cannot write under pytest's ``tmp_path`` (``/tmp/pytest-of-root`` is 0700).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(name="marker_dir")
def marker_dir_fixture() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jobsheet-test-markers-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
