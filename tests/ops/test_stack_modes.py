"""The local stack's state is its owner's alone: the directory 0700, the database, the S3 data,
the logs and the secrets readable by no one else, including what an older version left 0644."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path

from jobsheet.core.objectstore import internal_client
from jobsheet.ops.stack import Stack
from tests.servers import stack_settings


def loose_entries(state_dir: Path) -> list[str]:
    """Every directory or file under ``state_dir`` (itself included) that group or others may
    use, with its mode."""
    found = []
    for root, dirs, files in os.walk(state_dir):
        for path in [Path(root)] + [Path(root) / name for name in dirs + files]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                found.append(f"{path} {stat.S_IMODE(mode):o}")
    return sorted(set(found))


async def test_stack_state_is_owner_only_even_after_an_older_version(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    # What an older version left: a 0755 state directory with world-readable data in it.
    for directory in (state_dir, state_dir / "temporal", state_dir / "s3" / "jobsheet"):
        directory.mkdir(parents=True)
        directory.chmod(0o755)
    old_object = state_dir / "s3" / "jobsheet" / "old.txt"
    old_object.write_text("an old user's input")
    old_object.chmod(0o644)
    settings = stack_settings(state_dir)
    stack = Stack(settings)
    try:
        await asyncio.to_thread(stack.up)
        s3 = internal_client(settings)
        s3.put_object(settings.bucket, "jobs/new/input", io.BytesIO(b"a new input"), 11)
        database = state_dir / "temporal" / "temporal.sqlite"
        assert database.exists()
        stored = [p for p in (state_dir / "s3").rglob("*") if p.is_file() and "new" in str(p)]
        assert stored, "the new object's data file is somewhere under s3/"
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        for path in [database, old_object, *stored]:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        assert loose_entries(state_dir) == []
    finally:
        await asyncio.to_thread(stack.down)
