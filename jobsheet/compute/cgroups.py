"""cgroup v2 limits for calculations, where the machine delegates a cgroup to the worker.

Each run gets a cgroup of its own with ``pids.max`` and ``memory.max``; the child joins it
(writing "0" to its ``cgroup.procs``) before it drops its privileges, and ``cgroup.kill`` ends
whatever is left after the run, even a process that left the run's process group. Where no
cgroup can be had (cgroup v1, a read-only cgroupfs, a cgroup shared with other processes),
:func:`detect_cgroups` answers None and runs have their rlimits only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("jobsheet.compute")

CGROUP_CONTROLLERS = ("pids", "memory")


@dataclass(frozen=True)
class RunCgroup:
    """One run's cgroup (v2)."""

    path: Path

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, wherever it moved in the process tree."""
        kill_file = self.path / "cgroup.kill"
        try:
            if kill_file.exists():
                kill_file.write_text("1")
                return
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass

    def remove(self) -> None:
        """Kill what is left and remove the cgroup (it goes once its processes are reaped)."""
        self.kill_all()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # busy until the killed processes are gone
        log.warning("run cgroup %s is still busy; the next worker start removes it", self.path)


@dataclass(frozen=True)
class CgroupParent:
    """A cgroup v2 directory in which this worker may create run cgroups."""

    path: Path

    def create(self, name: str, *, processes: int, memory_bytes: int) -> RunCgroup | None:
        """A cgroup for one run with its limits, or None if it cannot be made now."""
        path = self.path / name
        try:
            path.mkdir(mode=0o700)
            (path / "pids.max").write_text(str(processes))
            (path / "memory.max").write_text(str(memory_bytes))
            swap = path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        except OSError as exc:
            log.warning("no cgroup for this run (%s); rlimits only", exc)
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return RunCgroup(path)

    def sweep(self, stale: Callable[[str], bool]) -> list[Path]:
        """Remove the run cgroups whose names ``stale`` says belong to workers gone."""
        removed = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path):
                if stale(entry.name) and entry.is_dir(follow_symlinks=False):
                    RunCgroup(Path(entry.path)).remove()
                    removed.append(Path(entry.path))
        return removed


def detect_cgroups(
    *, mountinfo: Path = Path("/proc/self/mountinfo"), own: Path = Path("/proc/self/cgroup")
) -> CgroupParent | None:
    """The cgroup v2 directory this worker may create run cgroups in, or None.

    It is the worker's own cgroup when that offers ``pids`` and ``memory`` and is writable:
    already enabled for children (the root cgroup, a delegated parent), or holding this process
    alone, in which case the worker moves itself into a leaf (``jobsheet-worker``) and enables
    the controllers for the run cgroups beside it. Anything else (cgroup v1, a read-only
    cgroupfs in a container, a cgroup shared with other processes) means None.
    """
    try:
        mount = _cgroup2_mount(mountinfo)
        relative = _cgroup2_path(own)
        if mount is None or relative is None:
            return None
        here = mount / relative.lstrip("/")
        offered = set((here / "cgroup.controllers").read_text().split())
        if not set(CGROUP_CONTROLLERS) <= offered or not os.access(here, os.W_OK):
            return None
        enabled = set((here / "cgroup.subtree_control").read_text().split())
        if not set(CGROUP_CONTROLLERS) <= enabled:
            if (here / "cgroup.procs").read_text().split() != [str(os.getpid())]:
                return None
            leaf = here / "jobsheet-worker"
            leaf.mkdir(mode=0o755, exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (here / "cgroup.subtree_control").write_text(
                " ".join(f"+{name}" for name in CGROUP_CONTROLLERS)
            )
        return CgroupParent(here)
    except OSError as exc:
        log.info("no cgroup v2 limits for calculations: %s", exc)
        return None


def _cgroup2_mount(mountinfo: Path) -> Path | None:
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split()[:1] == ["cgroup2"]:
            return Path(before.split()[4])
    return None


def _cgroup2_path(own: Path) -> str | None:
    for line in own.read_text().splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None
