"""Where and as whom calculations run: the calculation's user, run directories, cgroups.

A compute worker prepares its :class:`Sandbox` once, at start (:func:`prepare_sandbox`):

- **The calculation's user.** A worker running as root runs every calculation as an
  unprivileged user (``settings.compute_run_as_user``; by default ``jobsheet-calc`` if that
  user exists, else ``nobody``), so the calculation cannot read the worker's environment, its
  memory or its credentials, and ``RLIMIT_NPROC`` counts that user's processes, not the
  worker's. A worker that is not root cannot switch users: calculations run as the worker's own
  user, and the worker makes itself non-dumpable, so that they still cannot read its
  ``/proc/<pid>/environ`` or memory (they could read the files the worker's user can).
- **Run directories** are ``<tmp>/jobsheet-run-<worker pid>-<worker start ticks>-<random>``:
  recognisably the runner's own, and naming the process that owns them. A worker that was
  SIGKILLed cannot remove its own, so every compute worker sweeps, at start, the run directories
  of owners that no longer run (never one of a live worker, whichever process it is).
- **cgroup v2** (:mod:`jobsheet.compute.cgroups`), where the machine delegates one to the
  worker (the worker's own cgroup is writable, offers ``pids`` and ``memory``, and holds the
  worker alone): each run gets a cgroup with ``pids.max`` and ``memory.max``, and
  ``cgroup.kill`` ends whatever is left, even a process that left the run's process group.
  Elsewhere this is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jobsheet.compute.cgroups import CgroupParent, RunCgroup, detect_cgroups
from jobsheet.core.processes import PidRecord, is_alive, make_undumpable, start_ticks

log = logging.getLogger("jobsheet.compute")

RUN_DIR_PREFIX = "jobsheet-run-"
RUN_DIR_NAME = re.compile(r"^jobsheet-run-(\d+)-(\d+)-[0-9a-f]{16}$")
DEDICATED_USER = "jobsheet-calc"
FALLBACK_USER = "nobody"


class SandboxError(RuntimeError):
    """The configured calculation user cannot be used by this worker."""


@dataclass(frozen=True)
class CalculationUser:
    """Who calculations run as, and the Python interpreter ``{python}`` names for them."""

    name: str
    uid: int
    gid: int
    python: str = sys.executable

    @property
    def is_worker(self) -> bool:
        """Whether calculations run as the worker's own user (no switch)."""
        return self.uid == os.geteuid()

    @classmethod
    def worker(cls) -> CalculationUser:
        uid = os.geteuid()
        return cls(name=_user_name(uid), uid=uid, gid=os.getegid())


@dataclass(frozen=True)
class Sandbox:
    """Where and as whom one compute worker's calculations run."""

    user: CalculationUser = field(default_factory=CalculationUser.worker)
    run_base: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    cgroups: CgroupParent | None = None

    @contextlib.contextmanager
    def run_directory(self) -> Iterator[Path]:
        """A fresh run directory named after this process, removed on the way out."""
        path = self.run_base / run_dir_name()
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            remove_tree(path)

    def run_cgroup(self, run_dir: Path, *, processes: int, memory_bytes: int) -> RunCgroup | None:
        if self.cgroups is None:
            return None
        return self.cgroups.create(run_dir.name, processes=processes, memory_bytes=memory_bytes)


# --- run directories ----------------------------------------------------------------------------


def run_dir_name(pid: int | None = None) -> str:
    """``jobsheet-run-<pid>-<start ticks>-<random>``: whose it is, and unguessable."""
    pid = os.getpid() if pid is None else pid
    ticks = start_ticks(pid)
    return f"{RUN_DIR_PREFIX}{pid}-{ticks if ticks is not None else 0}-{secrets.token_hex(8)}"


def _stale_run_name(name: str) -> bool:
    """Whether ``name`` is a run directory (or cgroup) whose owning worker no longer runs."""
    match = RUN_DIR_NAME.match(name)
    if match is None:
        return False
    return not is_alive(PidRecord(pid=int(match.group(1)), start_ticks=int(match.group(2))))


def sweep_run_dirs(base: Path | None = None) -> list[Path]:
    """Remove the run directories under ``base`` (the temporary directory) whose owner process
    is gone (a worker SIGKILLed mid-run); only directories of this user with the runner's names.
    """
    base = base or Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if _stale_run_name(entry.name):
            remove_tree(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, whatever modes a calculation left behind."""

    def retry_writable(function: object, failed: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=retry_writable)


def hand_over(run_dir: Path, user: CalculationUser, *, keep: set[Path]) -> Path:
    """Give the calculation's user its part of ``run_dir``; returns its home directory.

    ``run_dir`` stays the worker's (0711: the user may pass, not list or rename), ``keep`` (the
    logs the worker opened for it) stays the worker's alone; everything else (the input, the
    output directory) and a fresh ``home`` become the user's.
    """
    home = run_dir / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    if user.is_worker:
        return home
    os.chmod(run_dir, 0o711)
    for entry in os.scandir(run_dir):
        path = Path(entry.path)
        if path in keep or entry.is_symlink():
            continue
        _chown_tree(path, user.uid, user.gid)
    return home


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid, follow_symlinks=False)
    if top.is_dir() and not top.is_symlink():
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def reclaim(run_dir: Path) -> None:
    """Take ``run_dir`` back from the calculation, before anything in it is read.

    Top down, each directory is made the worker's, 0700, before its entries are touched, so a
    process of the calculation that outlived it can no longer add, rename or swap anything (a
    symlink to a secret in place of an output); files become the worker's, 0600.
    """
    uid, gid = os.geteuid(), os.getegid()
    for _root, dirs, files, fd in os.fwalk(run_dir, follow_symlinks=False):
        with contextlib.suppress(OSError):
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o700)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(name, 0o700, dir_fd=fd)
        for name in files:
            with contextlib.suppress(OSError):
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                if not stat.S_ISLNK(mode):
                    os.chmod(name, 0o600, dir_fd=fd)


# --- the calculation's user -------------------------------------------------------------------


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def resolve_user(setting: str) -> CalculationUser:
    """The user calculations run as, from ``settings.compute_run_as_user``.

    Empty: ``jobsheet-calc`` (if it exists) or ``nobody`` for a root worker, the worker's own
    user otherwise. A worker that is not root cannot run calculations as anyone else.
    """
    euid = os.geteuid()
    name = setting.strip()
    if not name:
        if euid != 0:
            return CalculationUser.worker()
        name = DEDICATED_USER if _user_exists(DEDICATED_USER) else FALLBACK_USER
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise SandboxError(
            f"JOBSHEET_COMPUTE_RUN_AS_USER names {name!r}, which is not a user here"
        ) from None
    if entry.pw_uid != euid and euid != 0:
        raise SandboxError(
            f"this worker runs as {_user_name(euid)}, not root, so it cannot run calculations "
            f"as {entry.pw_name}: run it as root, or leave JOBSHEET_COMPUTE_RUN_AS_USER empty "
            "(calculations then run as the worker's own user)"
        )
    return CalculationUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def runs_as(user: CalculationUser, argv: list[str]) -> bool:
    """Whether ``argv`` exits 0 when run as ``user`` (from an empty directory, no environment)."""
    try:
        result = subprocess.run(
            argv,
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


@functools.cache
def python_for(user: CalculationUser) -> str:
    """The interpreter ``{python}`` names for ``user``: the worker's own if the user may run
    it, else a system Python of the same version, else any system ``python3``."""
    if user.is_worker or runs_as(user, [sys.executable, "-c", ""]):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (version, "python3"):
        for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
            path = os.path.join(directory, candidate)
            if os.access(path, os.X_OK) and runs_as(user, [path, "-c", ""]):
                return path
    return sys.executable


@functools.cache
def reads_directory(user: CalculationUser, path: Path) -> bool:
    """Whether ``user`` may list and enter ``path`` (every directory above it included)."""
    test = shutil.which("test") or "/usr/bin/test"
    return user.is_worker or runs_as(user, [test, "-r", str(path), "-a", "-x", str(path)])


def calculations_for(user: CalculationUser, base_dir: Path, run_dir: Path) -> Path:
    """The directory ``{calculations_dir}`` names for a run as ``user``: the operator's own
    where the user can read it, else a copy in ``run_dir`` (the operator's may sit somewhere
    private, such as a checkout under ``/root`` or a 0700 temporary directory); the run
    directory is handed over to the user with everything in it."""
    if reads_directory(user, base_dir):
        return base_dir
    copy = run_dir / "calculations"
    shutil.copytree(base_dir, copy, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    return copy


# --- the worker ---------------------------------------------------------------------------------


def prepare_sandbox(run_as_user: str, *, run_base: Path | None = None) -> Sandbox:
    """What a compute worker does once, at start: hide its environment, sweep the run
    directories (and cgroups) SIGKILLed workers left, choose the calculations' user and
    Python, and look for cgroup v2."""
    make_undumpable()
    base = run_base or Path(tempfile.gettempdir())
    for path in sweep_run_dirs(base):
        log.info("removed %s, left by a worker that no longer runs", path)
    user = resolve_user(run_as_user)
    user = CalculationUser(user.name, user.uid, user.gid, python=python_for(user))
    if user.uid == 0:
        log.warning(
            "calculations run as root: they can read the worker's credentials; set "
            "JOBSHEET_COMPUTE_RUN_AS_USER to an unprivileged user"
        )
    elif user.is_worker:
        log.warning(
            "calculations run as the worker's own user %s (only a root worker can switch "
            "users): they cannot read its environment, but can read its user's files",
            user.name,
        )
    if user.python != sys.executable:
        log.info("{python} is %s for %s (it cannot run %s)", user.python, user.name, sys.executable)
    cgroups = detect_cgroups()
    if cgroups is not None:
        cgroups.sweep(_stale_run_name)
    log.info(
        "calculations run as %s (uid %d)%s",
        user.name,
        user.uid,
        f", limited by cgroups under {cgroups.path}" if cgroups else "",
    )
    return Sandbox(user=user, run_base=base, cgroups=cgroups)
