"""The local stack: a real Temporal dev server and a real S3 server, run from the state directory.

``up`` is idempotent and waits until each server answers; ``down`` stops exactly the processes
``up`` started (by pid file) and leaves the data in place, so jobs survive a restart.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobsheet import processes, search_attributes
from jobsheet.binaries import find_binary
from jobsheet.settings import S3_CREDENTIALS_FILE, Settings

READY_TIMEOUT_SECONDS = 60.0


@dataclass
class ServiceStatus:
    """What one stack service is doing, for ``up`` and ``status``."""

    name: str
    running: bool
    pid: int | None
    answering: bool
    endpoints: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass
class _Service:
    name: str
    port: int
    argv: Callable[[], list[str]]
    env: Callable[[], dict[str, str]]
    ready: Callable[[], bool]
    endpoints: Callable[[], dict[str, str]]
    extra_ports: list[int] = field(default_factory=list)
    after_start: Callable[[], None] | None = None


def ensure_s3_credentials(state_dir: Path) -> tuple[str, str]:
    """Generate the local S3 server's credentials once and keep them (mode 0600)."""
    path = state_dir / S3_CREDENTIALS_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        data = {
            "access_key": f"jobsheet-{secrets.token_hex(6)}",
            "secret_key": secrets.token_urlsafe(30),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
    os.chmod(path, 0o600)
    data = json.loads(path.read_text())
    return str(data["access_key"]), str(data["secret_key"])


def s3_server_command(
    data_dir: Path, port: int, access_key: str, secret_key: str, *, console_port: int | None = None
) -> tuple[str, list[str], dict[str, str]]:
    """The command that serves S3 from ``data_dir``: MinIO when on PATH, otherwise rclone.

    Credentials go in the environment, never on the command line where ``ps`` shows them.
    Returns (kind, argv, extra environment).
    """
    minio = find_binary("minio", required=False)
    if minio:
        argv = [minio, "server", str(data_dir), "--address", f"127.0.0.1:{port}", "--quiet"]
        if console_port:
            argv += ["--console-address", f"127.0.0.1:{console_port}"]
        env = {"MINIO_ROOT_USER": access_key, "MINIO_ROOT_PASSWORD": secret_key}
        return "minio", argv, env
    rclone = find_binary("rclone")
    assert rclone is not None
    argv = [rclone, "serve", "s3", str(data_dir), "--addr", f"127.0.0.1:{port}"]
    # rclone reads list flags from the environment as CSV, hence the quotes around the pair.
    env = {"RCLONE_AUTH_KEY": f'"{access_key},{secret_key}"', "RCLONE_CONFIG": "/dev/null"}
    return "rclone", argv, env


def s3_answers(port: int) -> bool:
    """True when an HTTP server answers on the port (any status: S3 refuses anonymous calls)."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def temporal_answers(port: int) -> bool:
    """True when the Temporal frontend reports SERVING."""
    if not processes.tcp_answers(port):
        return False
    temporal = find_binary("temporal")
    assert temporal is not None
    result = subprocess.run(
        [temporal, "operator", "cluster", "health", "--address", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0 and "SERVING" in result.stdout


class Stack:
    """The local stack's servers, their pid files, logs and data under the state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.run_dir = self.state_dir / "run"
        self.log_dir = self.state_dir / "logs"
        self._services = [self._temporal(), self._s3()]

    @property
    def service_names(self) -> list[str]:
        return [service.name for service in self._services]

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # --- services ---------------------------------------------------------------------------

    def _temporal(self) -> _Service:
        s = self.settings
        db = self.state_dir / "temporal" / "temporal.sqlite"

        def argv() -> list[str]:
            db.parent.mkdir(parents=True, exist_ok=True)
            temporal = find_binary("temporal")
            assert temporal is not None
            return [
                temporal, "server", "start-dev",
                "--ip", "127.0.0.1",
                "--port", str(s.temporal_port),
                "--ui-port", str(s.temporal_ui_port),
                "--db-filename", str(db),
                "--log-level", "warn",
                "--ui-disable-news-fetch",
                *search_attributes.cli_flags(),
            ]  # fmt: skip

        return _Service(
            name="temporal",
            port=s.temporal_port,
            extra_ports=[s.temporal_ui_port],
            argv=argv,
            env=dict,
            ready=lambda: temporal_answers(s.temporal_port),
            endpoints=lambda: {
                "temporal": f"127.0.0.1:{s.temporal_port}",
                "web ui": f"http://127.0.0.1:{s.temporal_ui_port}",
                "database": str(db),
            },
        )

    def _s3(self) -> _Service:
        s = self.settings
        data_dir = self.state_dir / "s3"
        kind_holder: dict[str, str] = {}

        def argv_and_env() -> tuple[list[str], dict[str, str]]:
            data_dir.mkdir(parents=True, exist_ok=True)
            access, secret = ensure_s3_credentials(self.state_dir)
            kind, argv, env = s3_server_command(data_dir, s.s3_port, access, secret)
            kind_holder["kind"] = kind
            return argv, env

        def create_bucket() -> None:
            from jobsheet.objectstore import ensure_bucket, internal_client

            ensure_bucket(internal_client(self._local_s3_settings()), s.bucket)

        return _Service(
            name="s3",
            port=s.s3_port,
            argv=lambda: argv_and_env()[0],
            env=lambda: argv_and_env()[1],
            ready=lambda: s3_answers(s.s3_port),
            endpoints=lambda: {
                "s3": f"http://127.0.0.1:{s.s3_port}",
                "bucket": s.bucket,
                "credentials": str(self.state_dir / S3_CREDENTIALS_FILE),
                "data": str(data_dir),
            },
            after_start=create_bucket,
        )

    def _local_s3_settings(self) -> Settings:
        return self.settings.model_copy(
            update={"s3_endpoint": f"127.0.0.1:{self.settings.s3_port}", "s3_access_key": None}
        )

    # --- operations -------------------------------------------------------------------------

    def _record(self, name: str) -> processes.PidRecord | None:
        record = processes.read_pid_file(self.pid_file(name))
        if record is not None and not processes.is_alive(record):
            self.pid_file(name).unlink(missing_ok=True)
            return None
        return record

    def up(self, *, on_progress: Callable[[str], None] = lambda _msg: None) -> list[ServiceStatus]:
        """Start every service that is not running, wait until all answer, and create the bucket.

        Ports are checked before anything starts; if a server fails to come up, the servers this
        call started are stopped again, so a failed ``up`` leaves nothing behind.
        """
        to_start: list[_Service] = []
        for service in self._services:
            record = self._record(service.name)
            if record is not None:
                on_progress(f"{service.name}: already running (pid {record.pid})")
                continue
            for port in [service.port, *service.extra_ports]:
                if not processes.port_is_free(port):
                    raise processes.PortInUse(
                        f"port {port} on 127.0.0.1 is already in use, so {service.name} cannot "
                        "start; stop whatever holds it or choose another port (see README)"
                    )
            to_start.append(service)
        started: list[processes.PidRecord] = []
        try:
            for service in to_start:
                record, _ = processes.start_process(
                    service.argv(),
                    pid_file=self.pid_file(service.name),
                    log_file=self.log_file(service.name),
                    env={**os.environ, **service.env()},
                    cwd=self.state_dir,
                )
                started.append(record)
                on_progress(f"{service.name}: started (pid {record.pid})")
            for service in self._services:
                self._wait_ready(service)
                if service.after_start is not None:
                    service.after_start()
        except BaseException:
            for record in started:
                processes.stop_process(record)
            raise
        return self.status()

    def _wait_ready(self, service: _Service) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            record = self._record(service.name)
            if record is None:
                raise processes.ServerDidNotStart(
                    f"{service.name} exited while starting; last lines of "
                    f"{self.log_file(service.name)}:\n{processes.tail(self.log_file(service.name))}"
                )
            if service.ready():
                return
            time.sleep(0.2)
        raise processes.ServerDidNotStart(
            f"{service.name} did not answer on port {service.port} within "
            f"{READY_TIMEOUT_SECONDS:.0f}s; see {self.log_file(service.name)}"
        )

    def down(self) -> list[str]:
        """Stop the services this stack started; return the names of those that were stopped."""
        stopped: list[str] = []
        for service in reversed(self._services):
            record = self._record(service.name)
            if record is not None and processes.stop_process(record):
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
