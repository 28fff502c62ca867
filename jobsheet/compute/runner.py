"""Run one program in isolation: its own user, process group and cgroup, a scrubbed environment,
rlimits and a clock.

The program starts in a fresh session (so its process group id is its pid) as the sandbox's
calculation user (:mod:`jobsheet.compute.sandbox`: an unprivileged user when the worker is root),
with only ``PATH``, ``LANG``, ``HOME`` and ``TMPDIR`` (its home in the run directory) in its
environment, stdin from /dev/null and stdout and stderr in files the worker opened.
util-linux's ``prlimit`` bounds CPU seconds, address space, file size and processes, a cgroup (where the
machine offers one) bounds processes and memory; the runner bounds wall time and total output
bytes itself. Whatever way the run ends (exit, limit, cancellation), every process left in the
group (and the cgroup) is killed, and the run directory is taken back from the calculation's
user, before the runner returns.
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
from jobsheet.compute.sandbox import CalculationUser, Sandbox, hand_over, reclaim
from jobsheet.core.processes import proc_stat, util_linux

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
POLL_SECONDS = 0.05
SIZE_CHECK_SECONDS = 0.25
PROGRESS_LINE = re.compile(rb"^PROGRESS\s+([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
WORKER_THREAD_HEADROOM = 64
"""Tasks the worker may start while a calculation that shares its user runs (thread pools grow
lazily), on top of the processes the calculation may have."""


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
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(home), "TMPDIR": str(home)}


def tasks_of_uid(uid: int) -> int:
    """How many tasks (threads) the user ``uid`` has now: what ``RLIMIT_NPROC`` counts."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as handle:
                status = handle.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (KeyError, ValueError, IndexError):
            continue
    return total


def process_limit(limits: Limits, user: CalculationUser) -> int:
    """``RLIMIT_NPROC`` for a run as ``user``.

    The kernel counts every task of the user's, not the run's: the calculation may add
    ``limits.processes`` to what the user already has (with a dedicated user that is what its
    other runs have; sharing the worker's user, the worker's threads and some room for more).
    """
    extra = tasks_of_uid(user.uid)
    if user.is_worker:
        extra += WORKER_THREAD_HEADROOM
    _soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard == resource.RLIM_INFINITY or os.geteuid() == 0:
        return limits.processes + extra
    return min(limits.processes + extra, hard)  # a process may not raise its hard limit


JOIN_CGROUP = 'echo 0 > "$1" && shift && exec "$@"'
"""The shell's one job: move itself (writing 0 moves the writer) into the run's cgroup, while it
is still the worker's user, then become the rest of the command line."""


def isolated_argv(
    argv: list[str], *, limits: Limits, user: CalculationUser, nproc: int, cgroup: Path | None
) -> list[str]:
    """``argv`` behind the tools that set the run up, each of which execs the next: ``sh`` joins
    the run's cgroup, util-linux's ``prlimit`` sets the rlimits, its ``setpriv`` switches to the
    calculation's user (no supplementary groups), forbids new privileges and has the kernel kill
    the program if the worker dies (set after the switch of user, which would clear it).

    All of it runs after exec, never between fork and exec: a ``preexec_fn`` runs Python in the
    child of a fork, where CPython 3.11 re-initialises its thread states under a lock another of
    the worker's threads (the Temporal SDK has many) may have held at the fork; a compute run's
    child in CI hung there forever, before its program started."""
    cpu = max(1, limits.cpu_seconds)
    command = [
        util_linux("prlimit"),
        f"--cpu={cpu}:{cpu + 1}",
        f"--as={limits.memory_bytes}:{limits.memory_bytes}",
        f"--fsize={limits.file_bytes}:{limits.file_bytes}",
        f"--nproc={nproc}:{nproc}",
        "--core=0:0",
        "--",
        util_linux("setpriv"),
        "--no-new-privs",
        "--pdeathsig=KILL",
    ]
    if not user.is_worker:
        command += [f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
    command += ["--", *argv]
    if cgroup is not None:
        command = ["/bin/sh", "-c", JOIN_CGROUP, "sh", str(cgroup / "cgroup.procs"), *command]
    return command


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
    argv: list[str],
    *,
    home: Path,
    stdout_path: Path,
    stderr_path: Path,
    limits: Limits,
    user: CalculationUser,
    cgroup: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``home`` as ``user``, the leader of a new session, limited (see
    :func:`isolated_argv`), with output to files and umask 077."""
    nproc = process_limit(limits, user)
    command = isolated_argv(argv, limits=limits, user=user, nproc=nproc, cgroup=cgroup)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        return subprocess.Popen(
            command,
            cwd=home,
            env=scrubbed_environment(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            close_fds=True,
            start_new_session=True,
            umask=0o077,  # applied by Python's C code between fork and exec, no preexec_fn
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
    sandbox: Sandbox | None = None,
) -> ProcessOutcome:
    """Run ``argv`` in ``run_dir`` under ``limits``; report progress every ``heartbeat_seconds``.

    ``run_dir`` is handed over to the sandbox's calculation user for the run (but for the
    directories of ``stdout_path`` and ``stderr_path``) and taken back before this returns. If
    the calling task is cancelled, the whole process group is killed before the cancellation
    propagates.
    """
    sandbox = sandbox or Sandbox()
    home = hand_over(run_dir, sandbox.user, keep={stdout_path.parent, stderr_path.parent})
    cgroup = sandbox.run_cgroup(
        run_dir, processes=limits.processes, memory_bytes=limits.memory_bytes
    )
    try:
        proc = start_isolated(
            argv,
            home=home,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            limits=limits,
            user=sandbox.user,
            cgroup=cgroup.path if cgroup is not None else None,
        )
        return await _supervise(
            proc,
            output_dir=output_dir,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            limits=limits,
            heartbeat_seconds=heartbeat_seconds,
            on_progress=on_progress,
        )
    finally:
        if cgroup is not None:
            cgroup.remove()  # whatever left the process group dies here
        reclaim(run_dir)


async def _supervise(
    proc: subprocess.Popen[bytes],
    *,
    output_dir: Path,
    stdout_path: Path,
    stderr_path: Path,
    limits: Limits,
    heartbeat_seconds: float,
    on_progress: Callable[[RunProgress], None],
) -> ProcessOutcome:
    """Watch the started program to its end: wall time, output size, progress."""
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
