"""The local stack: Temporal, S3, the worker and the public API, run from the state directory.

``up`` is idempotent: it starts what is not running, in stages (the servers, then the worker and
the API that connect to them), waits until each answers, and then makes sure the operator
side exists (an operator identity and the provider account). ``down`` stops exactly the
processes ``up`` started (by pid file), in reverse, and leaves the data in place, so jobs
survive a restart. The services themselves are described in :mod:`jobsheet.ops.services`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobsheet.core import processes
from jobsheet.core.settings import Settings
from jobsheet.identity.keys import ensure_identity
from jobsheet.ops.services import (
    Service,
    StackPaths,
    all_services,
    api_answers,
    ensure_s3_credentials,
    local_settings,
    s3_answers,
    s3_server_command,
    settings_env,
    temporal_answers,
)

READY_TIMEOUT_SECONDS = 60.0
SERVER_UMASK = 0o077
"""Every file the stack's processes create (database, objects, logs) is their owner's alone."""
BOOTSTRAP_TIMEOUT_SECONDS = 60.0

__all__ = [
    "ServiceStatus",
    "Stack",
    "api_answers",
    "ensure_s3_credentials",
    "s3_answers",
    "s3_server_command",
    "temporal_answers",
]


class BootstrapFailed(processes.ServerDidNotStart):
    """The servers run, but the operator identity or the provider account could not be made."""


@dataclass
class ServiceStatus:
    """What one stack service is doing, for ``up`` and ``status``."""

    name: str
    running: bool
    pid: int | None
    answering: bool
    endpoints: dict[str, str] = field(default_factory=dict)
    note: str = ""


class Stack:
    """The local stack's services, their pid files, logs and data under the state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.paths = StackPaths(settings.state_dir)
        self.run_dir = self.paths.run_dir
        self.log_dir = self.paths.log_dir
        self._services = all_services(settings, self.paths)
        self.operator: dict[str, object] = {}

    @property
    def service_names(self) -> list[str]:
        """The services in start order: temporal, s3, worker, api."""
        return [service.name for service in self._services]

    def pid_file(self, name: str) -> Path:
        return self.paths.pid_file(name)

    def log_file(self, name: str) -> Path:
        return self.paths.log_file(name)

    def _record(self, name: str) -> processes.PidRecord | None:
        record = processes.read_pid_file(self.pid_file(name))
        if record is not None and not processes.is_alive(record):
            self.pid_file(name).unlink(missing_ok=True)
            return None
        return record

    # --- up -----------------------------------------------------------------------------------

    def up(self, *, on_progress: Callable[[str], None] = lambda _msg: None) -> list[ServiceStatus]:
        """Start every service that is not running, wait until all answer, bootstrap the operator.

        Ports are checked before anything starts; if a service fails to come up, the services
        this call started are stopped again, so a failed ``up`` leaves nothing behind.
        """
        to_start: list[Service] = []
        for service in self._services:
            record = self._record(service.name)
            if record is not None:
                on_progress(f"{service.name}: already running (pid {record.pid})")
                continue
            for port in service.ports:
                if not processes.port_is_free(port):
                    raise processes.PortInUse(
                        f"port {port} on 127.0.0.1 is already in use, so {service.name} cannot "
                        "start; stop whatever holds it or choose another port (see README)"
                    )
            to_start.append(service)
        # Owner-only from the first file on: the state holds the run tokens (Temporal's
        # database), the users' data (S3), the generated secrets and the logs.
        private_state_dir(self.state_dir)
        # The operator's key exists before the ledger worker starts: it is the worker's trust
        # anchor for deposits (jobsheet/identity/trust.py); registering it waits for Temporal.
        ensure_identity(self.settings.operator_user, config_dir=self.state_dir)
        started: list[tuple[Service, processes.PidRecord]] = []
        try:
            for stage in sorted({service.stage for service in self._services}):
                members = [service for service in self._services if service.stage == stage]
                for service in members:
                    if service in to_start:
                        record = self._start(service)
                        started.append((service, record))
                        on_progress(f"{service.name}: started (pid {record.pid})")
                for service in members:
                    self._wait_ready(service)
                    if service.after_start is not None:
                        service.after_start()
            self.operator = self._bootstrap_operator()
            on_progress(
                f"operator: user {self.operator['operator']}, "
                f"provider account {self.operator['provider_account']}"
            )
        except BaseException:
            for service, record in reversed(started):
                processes.stop_process(record, timeout=service.stop_timeout)
            raise
        return self.status()

    def _start(self, service: Service) -> processes.PidRecord:
        log = self.log_file(service.name)
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Readiness lines are looked for only in what this process writes, not in older runs.
        offset = log.stat().st_size if log.exists() else 0
        processes.write_private(self.paths.log_start_file(service.name), str(offset))
        argv = service.argv()
        # argv() may have made the service's data directory: owner-only before it starts.
        private_entries(self.state_dir)
        record, _ = processes.start_process(
            argv,
            pid_file=self.pid_file(service.name),
            log_file=log,
            env={**_inherited_env(), **service.env()},
            cwd=service.cwd or self.state_dir,
            umask=SERVER_UMASK,
        )
        return record

    def _wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._record(service.name) is None:
                raise processes.ServerDidNotStart(
                    f"{service.name} exited while starting; last lines of "
                    f"{self.log_file(service.name)}:\n{processes.tail(self.log_file(service.name))}"
                )
            if service.ready():
                return
            time.sleep(0.2)
        where = f" on port {service.ports[0]}" if service.ports else ""
        raise processes.ServerDidNotStart(
            f"{service.name} did not answer{where} within {READY_TIMEOUT_SECONDS:.0f}s; "
            f"see {self.log_file(service.name)}"
        )

    def _bootstrap_operator(self) -> dict[str, object]:
        """Run :mod:`jobsheet.ops.bootstrap` against the stack (its own process; idempotent)."""
        result = subprocess.run(
            [sys.executable, "-m", "jobsheet.ops.bootstrap"],
            env=settings_env(local_settings(self.settings)),
            cwd=self.state_dir,
            capture_output=True,
            text=True,
            timeout=BOOTSTRAP_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            message = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise BootstrapFailed(message[0])
        data = json.loads(result.stdout.strip().splitlines()[-1])
        return dict(data) if isinstance(data, dict) else {}

    # --- down and status ----------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop the services this stack started, last first; return the names of those stopped."""
        stopped: list[str] = []
        for service in reversed(self._services):
            record = self._record(service.name)
            if record is not None and processes.stop_process(record, timeout=service.stop_timeout):
                stopped.append(service.name)
            self.pid_file(service.name).unlink(missing_ok=True)
        return stopped

    def status(self) -> list[ServiceStatus]:
        result: list[ServiceStatus] = []
        for service in self._services:
            record = self._record(service.name)
            running = record is not None
            result.append(
                ServiceStatus(
                    name=service.name,
                    running=running,
                    pid=record.pid if record else None,
                    answering=running and service.ready(),
                    endpoints=service.endpoints(),
                )
            )
        return result


def private_state_dir(state_dir: Path) -> None:
    """Make the state directory its owner's alone: created 0700, and every directory and file
    already in it stripped of group and other permissions (a state directory made by an older
    version, with a 0644 database or 0644 objects, is fixed at ``up``). Symlinks are left as
    they are and never followed."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _owner_only(state_dir)
    for root, dirs, files in os.walk(state_dir):
        for name in dirs + files:
            _owner_only(Path(root) / name)


def private_entries(state_dir: Path) -> None:
    """Strip group and other permissions from the state directory's direct entries (cheap; for
    a directory a service has just made)."""
    for entry in os.scandir(state_dir):
        _owner_only(Path(entry.path))


def _owner_only(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not stat.S_IMODE(mode) & 0o077:
            return
        os.chmod(path, stat.S_IMODE(mode) & 0o700)
    except (FileNotFoundError, PermissionError):
        pass  # gone meanwhile, or not ours: the 0700 state directory still hides it


def _inherited_env() -> dict[str, str]:
    """This process's environment without ``JOBSHEET_*``: services get the stack's settings."""
    return {key: value for key, value in os.environ.items() if not key.startswith("JOBSHEET_")}
