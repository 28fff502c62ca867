"""One settings object, built at start-up from ``JOBSHEET_*`` variables and the state directory.

Nothing here is read at import time: call :func:`load_settings` (or construct
:class:`Settings`) where a program starts, and pass the object down.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S3_CREDENTIALS_FILE = "s3-credentials.json"
PAR_SECRET_FILE = "par-secret"
LEDGER_KEY_FILE = "ledger-key"

# A job's time limits, the operator's defaults: the settings read them, and the job's policy
# (jobsheet/jobs/messages.py) falls back to them when a recorded policy lacks a field.
JOB_EXPIRY_SECONDS = 3600
DOWNLOAD_PAR_SECONDS = 24 * 3600
RETENTION_SECONDS = 7 * 24 * 3600
WRITE_URL_SECONDS = 15 * 60
MAX_PAR_SECONDS = 7 * 24 * 3600
"""The longest an S3 (SigV4) presigned URL may live."""


def default_state_dir() -> Path:
    """Where the local stack keeps its data, logs, pid files and generated credentials."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "jobsheet"


class Settings(BaseSettings):
    """Configuration for every jobsheet program (CLI, worker, API, tests).

    The Temporal connection follows ``temporalio.envconfig`` conventions (``TEMPORAL_ADDRESS``,
    ``TEMPORAL_NAMESPACE``, the ``temporal.toml`` profile) unless ``JOBSHEET_TEMPORAL_ADDRESS``
    overrides it. S3 credentials come from the environment or, for the local stack, from the
    0600 file the stack generated in the state directory.
    """

    model_config = SettingsConfigDict(env_prefix="JOBSHEET_", extra="ignore")

    state_dir: Path = Field(default_factory=default_state_dir)

    temporal_address: str | None = None
    temporal_namespace: str | None = None
    temporal_port: int = 7233
    temporal_ui_port: int = 8233

    s3_endpoint: str | None = None
    s3_public_endpoint: str | None = None
    s3_port: int = 9000
    s3_compute_endpoint: str | None = None
    """host:port compute workers reach S3 at (default: the public endpoint); input read PARs and
    output PUTs are signed for it, so compute inside a private network needs no public route."""
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    bucket: str = "jobsheet"

    api_host: str = "127.0.0.1"
    """The address the public API binds (0.0.0.0 inside a container)."""
    api_port: int = 8090
    api_url: str = ""
    """The public API as users reach it (``JOBSHEET_API_URL``): the only address a user's SDK and
    CLI need. Run PAR URLs start with it, and request signatures cover it. Default: the local
    stack's API, ``http://127.0.0.1:$JOBSHEET_API_PORT``."""
    api_compute_url: str | None = None
    """The URL compute workers reach the API at (default: the public URL)."""
    api_max_body_bytes: int = Field(default=256 * 1024, gt=0)
    """The largest request body the API reads (413 beyond it)."""
    api_signature_max_skew_seconds: int = Field(default=300, gt=0, le=3600)
    """How far a signed request's ``created`` may be from the API's clock (401 beyond it)."""
    api_key_cache_seconds: float = Field(default=2.0, ge=0)
    """How long one API process trusts a user's key list before asking the registry again."""
    signup_burst: int = Field(default=10, gt=0)
    """Sign-ups one client address may make at once before the API answers 429."""
    signup_per_minute: float = Field(default=6.0, gt=0)
    """Sign-ups per minute one client address may make, sustained."""
    operator_user: str = "operator"
    """The user whose key signs deposits and may read every job and account."""
    operator_public_keys: str = ""
    """The operator's Ed25519 public keys (base64, comma-separated) the ledger workers trust for
    deposits, overdrafts and revocations, whatever Temporal's user registry says (see
    jobsheet/identity/trust.py). Default: the stack's operator key file in the state directory."""
    par_secret: SecretStr | None = None
    ledger_key: SecretStr | None = None
    """The ledger workers' Ed25519 private key (base64, raw 32 bytes) that signs credits between
    accounts; default: generated once in the state directory (0600)."""
    payload_keys: SecretStr | None = None
    """The keys that encrypt Temporal payloads (``id:base64key,id:base64key``, 32-byte AES keys,
    the first seals new payloads, every one still opens); default: the stack's ``payload-keys``
    file in the state directory (0600). Every worker, the API and the CLI's operator commands
    must share them (see jobsheet/core/payload_codec.py)."""
    codec_token: SecretStr | None = None
    """The bearer token of the API's codec endpoint (the Web UI's payload decoder, operator
    only); default: generated once in the state directory (``codec-token``, 0600)."""
    codec_cors_origins: str = ""
    """The Web UI origins (comma-separated) whose browsers may call the codec endpoint; default:
    the local stack's UI, ``http://127.0.0.1:$JOBSHEET_TEMPORAL_UI_PORT`` and ``localhost``."""
    run_par_burst: int = Field(default=5, gt=0)
    """Run PAR calls with a job's right token at once before the API answers 429 (wrong
    tokens never count against the job)."""
    run_par_per_minute: float = Field(default=6.0, gt=0)
    """Run PAR calls with a job's right token per minute, sustained."""
    run_par_client_burst: int = Field(default=30, gt=0)
    """Failed run PAR calls (wrong token, unknown job) one client address may make at once
    before its failing calls answer 429."""
    run_par_client_per_minute: float = Field(default=60.0, gt=0)
    """Failed run PAR calls per minute one client address may make, sustained."""
    write_url_seconds: int = Field(default=WRITE_URL_SECONDS, gt=0, le=WRITE_URL_SECONDS)
    """The longest a presigned PUT granted for a bucket-write PAR lives (the jobs worker signs
    it into each PAR); a job sweeps its storage once the last one can have expired."""

    provider_account: str = "provider"
    """The account that cashes users' cheques and is paid for their jobs."""
    job_expiry_seconds: int = Field(default=JOB_EXPIRY_SECONDS, gt=0)
    download_par_seconds: int = Field(default=DOWNLOAD_PAR_SECONDS, gt=0, le=MAX_PAR_SECONDS)
    retention_seconds: int = Field(default=RETENTION_SECONDS, ge=0)
    sweep_interval_seconds: int = Field(default=60, ge=1)
    """How often the storage sweep deletes what ended jobs no longer keep (late uploads once
    their PAR expired, outputs once their retention ended); see jobsheet/jobs/cleanup.py."""
    max_cached_workflows: int = Field(default=200, ge=0)
    """Workflows each worker (one per task queue) keeps in memory between tasks; the rest are
    rebuilt from history when they next wake, so a worker's memory does not grow with the
    number of open jobs (JOBSHEET_MAX_CACHED_WORKFLOWS)."""
    metrics_host: str = "127.0.0.1"
    """The address the process's Prometheus endpoint binds (0.0.0.0 inside a container)."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Where a worker or the API serves ``/metrics`` (the Temporal SDK's metrics and jobsheet's
    own) and ``/healthz`` (JOBSHEET_METRICS_PORT); unset: no endpoint."""
    otlp_endpoint: str | None = None
    """An OpenTelemetry collector's OTLP/HTTP base URL (JOBSHEET_OTLP_ENDPOINT), e.g.
    ``http://otel-collector:4318``: the API and the workers export their traces to its
    ``/v1/traces`` (a URL already ending so is used as it is); unset: no process traces. See
    docs/tracing.md."""
    log_format: str = Field(default="json", pattern="^(json|text)$")
    """``json``: one JSON object per log line (the default, for log collectors); ``text``: one
    readable line per event."""
    job_search_attributes: bool = True
    """Upsert JobState on job sheets (off only for servers without the search attributes)."""

    task_queue_jobs: str = "jobsheet-jobs"
    task_queue_ledger: str = "jobsheet-ledger"
    compute_task_queue_prefix: str = "jobsheet-compute-"
    # The operator's calculations (compute services); default: the file shipped in the repository.
    calculations_file: Path = Field(
        default_factory=lambda: (
            Path(__file__).resolve().parents[2] / "calculations" / "calculations.toml"
        )
    )
    compute_run_as_user: str = ""
    """The user (name or uid) calculations run as. A root worker switches to it for each run;
    empty: ``jobsheet-calc`` if that user exists, else ``nobody``, when the worker runs as root,
    and the worker's own user otherwise (see docs/hardening.md)."""

    config_dir: Path | None = None
    user: str | None = None
    """The user the SDK and CLI act as by default (its key is read from the config dir)."""
    authorisation_max_age_seconds: int = Field(default=7200, gt=0, le=86400)

    # --- Temporal -------------------------------------------------------------------------

    def temporal_connect_config(self) -> dict[str, Any]:
        """Keyword arguments for ``temporalio.client.Client.connect``."""
        from temporalio.envconfig import ClientConfig

        config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
        if self.temporal_address:
            config["target_host"] = self.temporal_address
        elif "TEMPORAL_ADDRESS" not in os.environ:
            config["target_host"] = f"127.0.0.1:{self.temporal_port}"
        if self.temporal_namespace:
            config["namespace"] = self.temporal_namespace
        config.setdefault("namespace", "default")
        return config

    @property
    def temporal_target(self) -> str:
        return str(self.temporal_connect_config()["target_host"])

    @property
    def web_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.temporal_ui_port}"

    # --- S3 -------------------------------------------------------------------------------

    @property
    def s3_endpoint_resolved(self) -> str:
        """host:port the services use to reach S3."""
        return self.s3_endpoint or f"127.0.0.1:{self.s3_port}"

    @property
    def s3_public_endpoint_resolved(self) -> str:
        """host:port presigned URLs are signed for: the address users reach S3 at."""
        return self.s3_public_endpoint or self.s3_endpoint_resolved

    @property
    def s3_compute_endpoint_resolved(self) -> str:
        """host:port the PARs handed to compute workers are signed for."""
        return self.s3_compute_endpoint or self.s3_public_endpoint_resolved

    def s3_credentials(self) -> tuple[str, str]:
        """The S3 access key and secret key, from the environment or the stack's state file."""
        if self.s3_access_key and self.s3_secret_key:
            return self.s3_access_key.get_secret_value(), self.s3_secret_key.get_secret_value()
        path = self.state_dir / S3_CREDENTIALS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RuntimeError(
                "no S3 credentials: set JOBSHEET_S3_ACCESS_KEY and JOBSHEET_S3_SECRET_KEY, "
                f"or run `jobsheet stack up` to generate them in {path}"
            ) from None
        return str(data["access_key"]), str(data["secret_key"])

    # --- public API ------------------------------------------------------------------------

    @model_validator(mode="after")
    def _default_api_url(self) -> Settings:
        self.api_url = (self.api_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")
        return self

    @property
    def api_compute_url_resolved(self) -> str:
        """Where bucket-write PARs send compute workers to exchange them."""
        return (self.api_compute_url or self.api_url).rstrip("/")

    def par_signing_key(self) -> bytes:
        """The secret that signs PAR capabilities: from the environment, or generated once (0600)."""
        if self.par_secret is not None:
            return self.par_secret.get_secret_value().encode()
        return self._state_secret(PAR_SECRET_FILE, lambda: secrets.token_urlsafe(48)).encode()

    def ledger_private_key(self) -> str:
        """The ledger workers' signing key (base64 of 32 raw bytes): from the environment, or
        generated once in the state directory (0600)."""
        if self.ledger_key is not None:
            return self.ledger_key.get_secret_value()
        return self._state_secret(
            LEDGER_KEY_FILE, lambda: base64.b64encode(secrets.token_bytes(32)).decode()
        )

    def _state_secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret in ``<state dir>/name``, written once (0600) by whoever comes first."""
        path = self.state_dir / name
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(make())
        return path.read_text().strip()

    def compute_task_queue(self, service: str) -> str:
        """The task queue that serves compute service ``service``."""
        return f"{self.compute_task_queue_prefix}{service}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, applying explicit overrides on top.

    With ``JOBSHEET_SECRETS_DIR`` set (compose mounts its ``secrets:`` at /run/secrets), each
    secret may come from a file there named like its variable (``jobsheet_par_secret``); a
    variable in the environment still wins.
    """
    secrets_dir = os.environ.get("JOBSHEET_SECRETS_DIR")
    if secrets_dir and "_secrets_dir" not in overrides:
        overrides["_secrets_dir"] = secrets_dir
    return Settings(**overrides)
