"""Run one program in isolation: its own process group, a scrubbed environment, rlimits and a clock.

The program starts in a fresh session (so its process group id is its pid) with only ``PATH``,
``LANG`` and ``HOME`` (the run directory) in its environment, stdin from /dev/null and stdout and
stderr in files. ``setrlimit`` bounds CPU seconds, address space, file size and processes; the
runner bounds wall time and total output bytes itself. Whatever way the run ends (exit, limit,
cancellation), every process left in the group is killed before the runner returns.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobsheet.compute.models import RunPhase, RunProgress
from jobsheet.processes import die_with_parent_in_child, proc_stat

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
POLL_SECONDS = 0.05
SIZE_CHECK_SECONDS = 0.25
PROGRESS_LINE = re.compile(rb"^PROGRESS\s+([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


@dataclass(frozen=True)
class Limits:
    """What one run may use."""

    wall_seconds: float
    cpu_seconds: int
    memory_bytes: int
    file_bytes: int
    processes: int
    output_bytes: int


@dataclass(frozen=True)
class ProcessOutcome:
    """How the program ended and what it used."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    output_too_large: bool
    wall_seconds: float
    cpu_seconds: float
    fraction: float | None


def scrubbed_environment(home: Path) -> dict[str, str]:
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(home)}


def _apply_limits(limits: Limits) -> Callable[[], None]:
    cpu = max(1, limits.cpu_seconds)

    def preexec() -> None:  # runs in the child between fork and exec: no locks, no allocation
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.umask(0o077)
        # If the worker dies (SIGKILL), the kernel kills the program's leader too.
        die_with_parent_in_child()

    return preexec


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds used by the group's live processes and the children they have reaped."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and int(fields[2]) == pgid:
                ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def kill_group(pgid: int) -> None:
    """SIGKILL every process in the group (nothing happens when the group is already empty)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tree_bytes(*paths: Path) -> int:
    """Bytes in regular files under the given files or directories (symlinks not followed)."""
    total = 0
    for path in paths:
        if path.is_file() and not path.is_symlink():
            total += path.lstat().st_size
        elif path.is_dir():
            for root, _dirs, files in os.walk(path):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(root, name)).st_size
                    except OSError:
                        pass
    return total


class ProgressReader:
    """Follows a growing stdout file for ``PROGRESS <0..1>`` lines."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""
        self.fraction: float | None = None

    def poll(self) -> float | None:
        try:
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read(4 << 20)
        except OSError:
            return self.fraction
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()[-4096:]
        for line in lines:
            match = PROGRESS_LINE.match(line.strip())
            if match:
                self.fraction = min(1.0, max(0.0, float(match.group(1))))
        return self.fraction


def start_isolated(
    argv: list[str], *, run_dir: Path, stdout_path: Path, stderr_path: Path, limits: Limits
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session, limited, with output to files."""
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        # preexec_fn only calls setrlimit/umask, which take no locks, so it is safe after fork
        # even though the worker has other threads.
        return subprocess.Popen(
            argv,
            cwd=run_dir,
            env=scrubbed_environment(run_dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            close_fds=True,
            start_new_session=True,
            preexec_fn=_apply_limits(limits),
        )


def poll_exit(pid: int) -> tuple[int, float] | None:
    """(wait status, CPU seconds of it and its reaped children) once ``pid`` exited, else None."""
    done, status, rusage = os.wait4(pid, os.WNOHANG)
    if not done:
        return None
    return status, rusage.ru_utime + rusage.ru_stime


async def run_isolated(
    argv: list[str],
    *,
    run_dir: Path,
    output_dir: Path,
    stdout_path: Path,
    stderr_path: Path,
    limits: Limits,
    heartbeat_seconds: float,
    on_progress: Callable[[RunProgress], None],
) -> ProcessOutcome:
    """Run ``argv`` in ``run_dir`` under ``limits``; report progress every ``heartbeat_seconds``.

    If the calling task is cancelled, the whole process group is killed before the
    cancellation propagates.
    """
    proc = start_isolated(
        argv, run_dir=run_dir, stdout_path=stdout_path, stderr_path=stderr_path, limits=limits
    )
    pgid = proc.pid
    started = time.monotonic()
    progress = ProgressReader(stdout_path)
    cpu = 0.0
    timed_out = too_large = False
    next_heartbeat = started
    next_size_check = started
    status: int | None = None
    rusage_cpu = 0.0
    try:
        while status is None:
            ended = poll_exit(proc.pid)
            now = time.monotonic()
            if ended is not None:
                status, rusage_cpu = ended
                break
            if not timed_out and now - started >= limits.wall_seconds:
                timed_out = True
                kill_group(pgid)
            if now >= next_size_check:
                next_size_check = now + SIZE_CHECK_SECONDS
                if not too_large and tree_bytes(output_dir, stdout_path, stderr_path) > (
                    limits.output_bytes
                ):
                    too_large = True
                    kill_group(pgid)
            if now >= next_heartbeat:
                next_heartbeat = now + heartbeat_seconds
                cpu = max(cpu, group_cpu_seconds(pgid))
                on_progress(
                    RunProgress(
                        phase=RunPhase.RUNNING,
                        elapsed_seconds=round(now - started, 3),
                        cpu_seconds=round(cpu, 3),
                        output_bytes=tree_bytes(output_dir, stdout_path, stderr_path),
                        fraction=progress.poll(),
                    )
                )
            await asyncio.sleep(POLL_SECONDS)
    except BaseException:
        kill_group(pgid)
        _reap(proc)
        raise
    finally:
        # Children the program forked (and left running) die with the group.
        kill_group(pgid)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    exit_code = proc.returncode if proc.returncode >= 0 else None
    term_signal = -proc.returncode if proc.returncode < 0 else None
    if term_signal == signal.SIGXFSZ:
        too_large = True
    if not too_large and tree_bytes(output_dir, stdout_path, stderr_path) > limits.output_bytes:
        too_large = True
    return ProcessOutcome(
        exit_code=exit_code,
        signal=term_signal,
        timed_out=timed_out,
        output_too_large=too_large,
        wall_seconds=wall,
        cpu_seconds=max(cpu, rusage_cpu),
        fraction=progress.poll(),
    )


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        _, status = os.waitpid(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        pass
