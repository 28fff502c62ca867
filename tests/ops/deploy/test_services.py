"""Every jobsheet service of docker-compose.yml, started on this machine with exactly the
environment and secrets compose gives it, answers its health check.

Each service (the API and every worker) runs as a process here: its command from the compose
file, its environment interpolated as compose would (``JOBSHEET_PUBLIC_HOST`` set, as an
operator's .env sets it), its secrets written where its container would find them (from
deploy/make-secrets, except the S3 keys, which are the test S3 server's: the MinIO init job
would have created that user). Only what names a place is replaced: the servers' addresses, the
ports, the container paths, and the namespace (the deployment tests' own, made by the real
namespace job, so that compose's default task queues meet no other test's workflows).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from jobsheet.core import processes
from jobsheet.core.objectstore import ensure_bucket, internal_client
from jobsheet.core.settings import Settings
from tests.ops.deploy.compose_file import (
    ROOT,
    interpolate,
    load,
    local_environment,
    python_services,
)
from tests.ops.deploy.conftest import NamespaceJob
from tests.servers import S3Server

PUBLIC_HOST = "jobsheet.invalid"
START_SECONDS = 90
# What may differ from compose's environment: places, and the namespace.
REPLACEABLE = {
    "JOBSHEET_TEMPORAL_ADDRESS",
    "JOBSHEET_TEMPORAL_NAMESPACE",
    "JOBSHEET_S3_ENDPOINT",
    "JOBSHEET_S3_PUBLIC_ENDPOINT",
    "JOBSHEET_S3_COMPUTE_ENDPOINT",
    "JOBSHEET_API_URL",
    "JOBSHEET_API_COMPUTE_URL",
    "JOBSHEET_API_HOST",
    "JOBSHEET_API_PORT",
    "JOBSHEET_METRICS_HOST",
    "JOBSHEET_METRICS_PORT",
    "JOBSHEET_SECRETS_DIR",
    "JOBSHEET_CALCULATIONS_FILE",
}


@dataclass
class Running:
    """One compose service, running here."""

    name: str
    env: dict[str, str]
    replaced: set[str]
    health_url: str
    log: Path
    record: processes.PidRecord

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def ready(self) -> bool:
        """Healthy, and for a worker, polling (it connected with its settings and secrets)."""
        if not self.healthy():
            return False
        return self.name == "api" or "worker ready:" in self.log.read_text(errors="replace")


def secrets_for(tmp: Path, s3_server: S3Server) -> dict[str, str]:
    directory = tmp / "made"
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "make-secrets"), str(directory)],
        check=True,
        capture_output=True,
    )
    secrets = {path.name: path.read_text() for path in directory.iterdir()}
    secrets["jobsheet_s3_access_key"] = s3_server.access_key
    secrets["jobsheet_s3_secret_key"] = s3_server.secret_key
    return secrets


@dataclass
class Deployment:
    services: dict[str, Running]
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    namespace_job: NamespaceJob,
    s3_server: S3Server,
) -> Iterator[Deployment]:
    assert namespace_job.first_run.returncode == 0, namespace_job.first_run.stderr
    tmp = tmp_path_factory.mktemp("deployment")
    secrets = secrets_for(tmp, s3_server)
    services = python_services(load())
    bucket = services["api"]["environment"]["JOBSHEET_BUCKET"]
    # What minio-init does before any service starts.
    root_settings = Settings(
        s3_endpoint=s3_server.endpoint,
        s3_access_key=SecretStr(s3_server.access_key),
        s3_secret_key=SecretStr(s3_server.secret_key),
    )
    ensure_bucket(internal_client(root_settings), bucket)
    api_port = processes.free_port()
    addresses = {
        "temporal:7233": namespace_job.address,
        "minio:9000": s3_server.endpoint,
        f"{PUBLIC_HOST}:9000": s3_server.endpoint,
        "api:8090": f"127.0.0.1:{api_port}",
        f"{PUBLIC_HOST}:8090": f"127.0.0.1:{api_port}",
        "0.0.0.0": "127.0.0.1",
    }
    running: dict[str, Running] = {}
    try:
        for name, service in services.items():
            metrics_port = processes.free_port()
            env, replaced = local_environment(
                service,
                root=tmp / name / "container",
                secrets=secrets,
                addresses=addresses,
                settings={
                    "JOBSHEET_TEMPORAL_NAMESPACE": namespace_job.namespace,
                    "JOBSHEET_API_PORT": str(api_port),
                    "JOBSHEET_METRICS_PORT": str(metrics_port),
                },
                dotenv={"JOBSHEET_PUBLIC_HOST": PUBLIC_HOST},
            )
            probe = " ".join(service["healthcheck"]["test"])
            match = re.search(r"http://127\.0\.0\.1:(\d+)/healthz", probe)
            assert match, f"{name}: {probe}"
            local_port = {"8090": api_port, "9464": metrics_port}[match.group(1)]
            home = tmp / name / "home"
            home.mkdir(parents=True)
            argv = [sys.executable if word == "python" else word for word in service["command"]]
            record, _ = processes.start_process(
                argv,
                pid_file=tmp / name / "pid",
                log_file=tmp / name / "log",
                # Nothing of this machine's environment but PATH and a home of its own.
                env={"PATH": os.environ["PATH"], "HOME": str(home), **env},
                cwd=ROOT,
                die_with_parent=True,
            )
            running[name] = Running(
                name=name,
                env=env,
                replaced=replaced,
                health_url=f"http://127.0.0.1:{local_port}/healthz",
                log=tmp / name / "log",
                record=record,
            )
        deadline = time.monotonic() + START_SECONDS
        waiting = set(running)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                process = running[name]
                if not processes.is_alive(process.record):
                    pytest.fail(f"{name} exited: {processes.tail(process.log)}")
                if process.ready():
                    waiting.discard(name)
            time.sleep(0.2)
        yield Deployment(running, secrets)
    finally:
        for process in running.values():
            processes.stop_process(process.record)


def test_only_places_are_replaced_in_what_compose_gives_each_service(
    deployment: Deployment,
) -> None:
    compose = python_services(load())
    assert set(deployment.services) == set(compose)
    for name, process in deployment.services.items():
        assert process.replaced <= REPLACEABLE, f"{name}: {process.replaced - REPLACEABLE}"
        for key, value in compose[name]["environment"].items():
            if key not in REPLACEABLE:
                expected = interpolate(str(value), {"JOBSHEET_PUBLIC_HOST": PUBLIC_HOST})
                assert process.env[key] == expected, f"{name}: {key}"


def test_every_service_answers_its_health_check_and_serves_metrics(
    deployment: Deployment,
) -> None:
    for name, process in deployment.services.items():
        assert process.ready(), f"{name} is not healthy: {processes.tail(process.log)}"
        assert processes.is_alive(process.record), name
        # What Prometheus scrapes (deploy/prometheus/prometheus.yml: <service>:9464/metrics).
        metrics = f"http://127.0.0.1:{process.env['JOBSHEET_METRICS_PORT']}/metrics"
        with urllib.request.urlopen(metrics, timeout=5) as response:
            assert response.status == 200 and b"jobsheet_build" in response.read(), name


def test_the_api_reads_its_mounted_calculations_and_its_secret_files(
    deployment: Deployment,
) -> None:
    api = deployment.services["api"]
    base = api.health_url.removesuffix("/healthz")
    listed = httpx.get(f"{base}/v1/calculations", timeout=10)
    assert listed.status_code == 200, listed.text
    assert "checksum" in listed.text
    # The codec endpoint opens with the token from its secret file, and seals and opens with
    # the payload keys from theirs.
    token = deployment.secrets["jobsheet_codec_token"]
    payloads = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "MQ=="}]}
    sealed = httpx.post(f"{base}/codec/{token}/encode", json=payloads, timeout=10)
    assert sealed.status_code == 200, sealed.text
    opened = httpx.post(f"{base}/codec/{token}/decode", json=sealed.json(), timeout=10)
    assert opened.json() == payloads
    refused = httpx.post(f"{base}/codec/not-the-token/decode", json=payloads, timeout=10)
    assert refused.status_code == 401
