"""The services of the local stack: how each starts, when it is ready, where it answers.

Temporal and S3 are servers from the project's wheels; the worker and the public API are this
project's own programs, started with the stack's settings passed down as ``JOBSHEET_*``
variables. Services start in stages: the servers first, then the programs that connect to them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from jobsheet.core import processes, search_attributes
from jobsheet.core.settings import S3_CREDENTIALS_FILE, Settings
from jobsheet.core.temporal import codec_token
from jobsheet.ops.binaries import find_binary

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_READY_LINE = "worker ready:"
# How much of a worker's log (from its start) is searched for the ready line.
WORKER_LOG_WINDOW = 1 << 20


@dataclass
class StackPaths:
    """Where the stack keeps pid files and logs, under the state directory."""

    state_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_start_file(self, name: str) -> Path:
        """The log offset at which the running process began writing (for readiness lines)."""
        return self.run_dir / f"{name}.logstart"


@dataclass
class Service:
    """One managed process of the stack."""

    name: str
    stage: int
    ports: list[int]
    argv: Callable[[], list[str]]
    env: Callable[[], dict[str, str]]
    ready: Callable[[], bool]
    endpoints: Callable[[], dict[str, str]]
    cwd: Path | None = None
    after_start: Callable[[], None] | None = None
    stop_timeout: float = 15.0
    """Seconds between SIGTERM and SIGKILL when the stack stops it."""


# --- readiness --------------------------------------------------------------------------------


def http_answers(url: str) -> bool:
    """True when an HTTP server answers ``url`` (any status: S3 refuses anonymous calls)."""
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def s3_answers(port: int) -> bool:
    return http_answers(f"http://127.0.0.1:{port}/")


def api_answers(port: int) -> bool:
    """True when the public API's ``/healthz`` says 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


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


def log_says(paths: StackPaths, name: str, line: str) -> bool:
    """True when the process's own part of its log (from its start offset) contains ``line``."""
    try:
        start = int(paths.log_start_file(name).read_text())
        with paths.log_file(name).open("rb") as log:
            log.seek(start)
            text = log.read(WORKER_LOG_WINDOW)
    except (FileNotFoundError, ValueError):
        return False
    return line.encode() in text


# --- S3 ---------------------------------------------------------------------------------------


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


def local_settings(settings: Settings) -> Settings:
    """``settings`` pointed at the stack's own servers and the S3 credentials it generated."""
    return settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{settings.temporal_port}",
            "s3_endpoint": f"127.0.0.1:{settings.s3_port}",
            "s3_access_key": None,
            "s3_secret_key": None,
            "api_host": "127.0.0.1",
        }
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child program build exactly ``settings``.

    Inherited ``JOBSHEET_*`` variables are replaced, so the child sees the stack's choices, and
    ``TEMPORAL_*`` ones (a profile for another cluster, an API key) are dropped: the child talks
    to the stack's own dev server.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JOBSHEET_", "TEMPORAL_"))
    }
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"JOBSHEET_{name.upper()}"] = str(value)
    pythonpath = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- metrics ports ----------------------------------------------------------------------------

METRICS_PORTS_FILE = "metrics-ports.json"


def metrics_port(paths: StackPaths, name: str, *, starting: bool = False) -> int | None:
    """The port where service ``name`` serves ``/metrics``: chosen free once and kept in the
    state directory, so that its URL stays the same across ``down`` and ``up``; chosen again
    only when the service is ``starting`` and something else holds the kept one. None while no
    port was ever chosen (a stack never started)."""
    path = paths.state_dir / METRICS_PORTS_FILE
    try:
        ports = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError):
        ports = {}
    port = ports.get(name)
    if starting and (port is None or not processes.port_is_free(port)):
        port = processes.free_port()
        while port in ports.values():
            port = processes.free_port()
        ports[name] = port
        paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        processes.write_private(path, json.dumps(ports, sort_keys=True))
    return port


def metrics_env(paths: StackPaths, name: str) -> dict[str, str]:
    """What a Python service is started with to serve its metrics (on 127.0.0.1)."""
    port = metrics_port(paths, name, starting=True)
    return {"JOBSHEET_METRICS_HOST": "127.0.0.1", "JOBSHEET_METRICS_PORT": str(port)}


def metrics_endpoint(paths: StackPaths, name: str) -> dict[str, str]:
    """``{"metrics": URL}`` for ``status``, once the service's port was chosen."""
    port = metrics_port(paths, name)
    return {"metrics": f"http://127.0.0.1:{port}/metrics"} if port is not None else {}


# --- the services -----------------------------------------------------------------------------


def temporal_service(settings: Settings, paths: StackPaths) -> Service:
    s = settings
    db = paths.state_dir / "temporal" / "temporal.sqlite"

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
            # The Web UI opens payloads through the API's codec endpoint (operator only: the
            # token is the stack's codec-token; see docs/payload-encryption.md).
            "--ui-codec-endpoint", f"{s.api_url}/codec/{codec_token(s)}",
            *search_attributes.cli_flags(),
        ]  # fmt: skip

    return Service(
        name="temporal",
        stage=0,
        ports=[s.temporal_port, s.temporal_ui_port],
        argv=argv,
        env=dict,
        ready=lambda: temporal_answers(s.temporal_port),
        endpoints=lambda: {
            "temporal": f"127.0.0.1:{s.temporal_port}",
            "web ui": f"http://127.0.0.1:{s.temporal_ui_port}",
            "database": str(db),
        },
    )


def s3_service(settings: Settings, paths: StackPaths) -> Service:
    s = settings
    data_dir = paths.state_dir / "s3"
    chosen: dict[str, tuple[list[str], dict[str, str]]] = {}

    def command() -> tuple[list[str], dict[str, str]]:
        if "command" not in chosen:
            data_dir.mkdir(parents=True, exist_ok=True)
            access, secret = ensure_s3_credentials(paths.state_dir)
            _kind, argv, env = s3_server_command(data_dir, s.s3_port, access, secret)
            chosen["command"] = (argv, env)
        return chosen["command"]

    def create_bucket() -> None:
        from jobsheet.core.objectstore import ensure_bucket, internal_client

        ensure_bucket(internal_client(local_settings(s)), s.bucket)

    return Service(
        name="s3",
        stage=0,
        ports=[s.s3_port],
        argv=lambda: command()[0],
        env=lambda: command()[1],
        ready=lambda: s3_answers(s.s3_port),
        endpoints=lambda: {
            "s3": f"http://127.0.0.1:{s.s3_port}",
            "bucket": s.bucket,
            "credentials": str(paths.state_dir / S3_CREDENTIALS_FILE),
            "data": str(data_dir),
        },
        after_start=create_bucket,
    )


def worker_service(settings: Settings, paths: StackPaths) -> Service:
    """``python worker.py --role all``: every workflow and activity, against the stack's servers."""

    def argv() -> list[str]:
        script = PROJECT_ROOT / "worker.py"
        if script.is_file():
            return [sys.executable, str(script), "--role", "all"]
        return [sys.executable, "-m", "worker", "--role", "all"]

    return Service(
        name="worker",
        stage=1,
        ports=[],
        argv=argv,
        env=lambda: {**settings_env(local_settings(settings)), **metrics_env(paths, "worker")},
        ready=lambda: log_says(paths, "worker", WORKER_READY_LINE),
        # The worker gives in-flight activities 30 s to finish after SIGTERM.
        stop_timeout=40.0,
        endpoints=lambda: {
            "task queues": f"{settings.task_queue_jobs}, {settings.task_queue_ledger}, "
            f"{settings.compute_task_queue_prefix}*",
            **metrics_endpoint(paths, "worker"),
        },
        cwd=paths.state_dir,
    )


def api_service(settings: Settings, paths: StackPaths) -> Service:
    """``python -m jobsheet.api`` on 127.0.0.1: the one door for users, and the PAR URLs."""
    port = settings.api_port
    return Service(
        name="api",
        stage=1,
        ports=[port],
        argv=lambda: [sys.executable, "-m", "jobsheet.api"],
        env=lambda: {**settings_env(local_settings(settings)), **metrics_env(paths, "api")},
        ready=lambda: api_answers(port),
        endpoints=lambda: {
            "api": settings.api_url,
            "docs": settings.api_url + "/docs",
            **metrics_endpoint(paths, "api"),
        },
        cwd=paths.state_dir,
    )


def all_services(settings: Settings, paths: StackPaths) -> list[Service]:
    """Every service, in start order (``down`` stops them in reverse)."""
    return [
        temporal_service(settings, paths),
        s3_service(settings, paths),
        worker_service(settings, paths),
        api_service(settings, paths),
    ]
