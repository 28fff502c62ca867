"""Start, find and stop the background server processes of the local stack, by pid file.

Each server runs in its own session (so its process group id is its pid) with its output in a
log file. The pid file records the pid *and* the process start time, so a pid reused by an
unrelated process after a reboot is never mistaken for ours and never signalled.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_DUMPABLE = 4
_LIBC = ctypes.CDLL(None, use_errno=True)


class PortInUse(RuntimeError):
    """A port the stack needs is taken by some other program."""


class ServerDidNotStart(RuntimeError):
    """A server exited or never answered while starting."""


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: int


@functools.cache
def util_linux(name: str) -> str:
    """The path of util-linux's ``setpriv`` or ``prlimit`` (every Linux distribution has them),
    or a clear error where it is missing; looked up once per process, not once per run."""
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        raise FileNotFoundError(f"`{name}` (util-linux) is not installed: install util-linux")
    return found


def dying_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel SIGKILLs it when the process that started it dies:
    util-linux's ``setpriv --pdeathsig`` sets that up after exec, where a ``preexec_fn`` would
    run Python between fork and exec (which can deadlock in a process with threads: see
    :func:`jobsheet.compute.runner.start_isolated`)."""
    return [util_linux("setpriv"), "--pdeathsig=KILL", "--", *argv]


def make_undumpable() -> None:
    """Make this process non-dumpable: its ``/proc/<pid>/environ``, memory and descriptors are
    then closed to other processes of its own user, and no core dump holds its secrets."""
    _LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def proc_stat(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (state) on, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after the last ')' is fixed.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot, or None when it does not exist."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def is_alive(record: PidRecord) -> bool:
    """True when the recorded process still runs (and is the same process, not a reused pid)."""
    fields = proc_stat(record.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == record.start_ticks


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]))
    except (FileNotFoundError, ValueError, KeyError):
        return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so a port with only TIME_WAIT connections left is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago, for a server to listen on.

    It is picked at random *below* the kernel's ephemeral range: a port from that range, once
    released, can be taken at any moment as the local end of some outgoing connection, and a
    server restarted on it (stack down, then up) would then fail to bind.
    """
    low, high = _ephemeral_range()
    floor, ceiling = (20000, low - 1) if low > 21000 else (high + 1, 65535)
    for _ in range(200):
        port = random.randint(floor, ceiling)
        if port_is_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tcp_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_process(
    argv: list[str],
    *,
    pid_file: Path,
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
    umask: int | None = None,
) -> tuple[PidRecord, subprocess.Popen[bytes]]:
    """Start ``argv`` in a new session with output to ``log_file`` and record it in ``pid_file``.

    ``die_with_parent`` (for test servers) has the kernel kill the server if the process that
    started it dies without stopping it, so an interrupted test run leaves no server behind.
    ``umask`` is the server's (the local stack gives its servers 077, so that every file they
    create, a database, an object, a log, is its owner's alone). The log file is created 0600.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if die_with_parent:
        argv = dying_with_parent(argv)
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            # Python applies a umask between fork and exec itself (no preexec_fn needed).
            umask=-1 if umask is None else umask,
        )
    ticks = start_ticks(proc.pid)
    record = PidRecord(pid=proc.pid, start_ticks=ticks if ticks is not None else -1)
    tmp = pid_file.with_suffix(".tmp")
    write_private(tmp, json.dumps({"pid": record.pid, "start_ticks": record.start_ticks}))
    tmp.replace(pid_file)
    return record, proc


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, a file only its owner may read (0600, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def stop_process(record: PidRecord, *, timeout: float = 15.0) -> bool:
    """Stop the process group we started: SIGTERM, then SIGKILL after ``timeout``.

    Returns True when a live process was stopped, False when it was already gone.
    """
    if not is_alive(record):
        return False
    _signal_group(record, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_alive(record):
            break
        time.sleep(0.1)
    else:
        _signal_group(record, signal.SIGKILL)
        for _ in range(50):
            _reap(record.pid)
            if not is_alive(record):
                break
            time.sleep(0.1)
    # Whatever else is left in its process group (children it forked) goes too.
    try:
        os.killpg(record.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return True


def _signal_group(record: PidRecord, sig: signal.Signals) -> None:
    try:
        os.killpg(record.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(record.pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 20) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(content[-lines:])
