"""docker-compose.yml is valid compose and wires the services the way users need them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_validates_against_the_compose_spec_schema() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_has_the_services_users_need(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {
        "temporal",
        "temporal-init",
        "temporal-ui",
        "minio",
        "minio-init",
        "worker",
        "api",
    }


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        if image is None:
            continue
        assert ":" in image and not image.endswith(":latest"), f"{name} image {image} is not pinned"
    assert compose["services"]["minio"]["image"].startswith("minio/minio:RELEASE.")


def test_ports_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # Temporal and its Web UI are the operator's: published on the loopback address only.
    assert services["temporal"]["ports"] == ["127.0.0.1:7233:7233"]
    assert services["temporal-ui"]["ports"] == ["127.0.0.1:8080:8080"]
    assert {"9000:9000", "9001:9001"} <= set(services["minio"]["ports"])
    assert "--console-address" in services["minio"]["command"]
    assert "8090:8090" in services["api"]["ports"]
    for name in ("temporal", "minio", "postgresql", "api"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("worker", "api"):
        deps = services[name]["depends_on"]
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert deps["temporal-init"]["condition"] == "service_completed_successfully"


def test_worker_is_built_here_and_signs_urls_for_the_published_minio(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    assert (ROOT / worker["build"]["dockerfile"]).is_file()
    env = worker["environment"]
    assert env["JOBSHEET_S3_ENDPOINT"] == "minio:9000"
    public = env["JOBSHEET_S3_PUBLIC_ENDPOINT"]
    # The public endpoint is a host users reach (not the internal service name) on the port
    # that minio publishes, so a presigned URL is valid where the user sends it.
    match = re.fullmatch(r"\$\{JOBSHEET_PUBLIC_HOST:-localhost\}:(\d+)", public)
    assert match, public
    published = {p.split(":")[0]: p.split(":")[1] for p in compose["services"]["minio"]["ports"]}
    assert published[match.group(1)] == "9000"
    server_url = compose["services"]["minio"]["environment"]["MINIO_SERVER_URL"]
    assert server_url == "http://${JOBSHEET_PUBLIC_HOST:-localhost}:9000"


def test_search_attributes_match_the_code(compose: dict[str, Any]) -> None:
    from jobsheet import search_attributes

    command = " ".join(compose["services"]["temporal-init"]["command"])
    for key in search_attributes.ALL:
        assert key.name in command


def test_api_is_built_here_and_reachable_at_its_public_url(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, worker = services["api"], services["worker"]
    # The same image as the worker, running the API module, bound to all interfaces.
    assert api["build"] == worker["build"] and api["image"] == worker["image"]
    assert api["command"] == ["python", "-m", "jobsheet.api"]
    env = api["environment"]
    assert env["JOBSHEET_API_HOST"] == "0.0.0.0"
    published = {p.split(":")[1]: p.split(":")[0] for p in api["ports"]}
    assert published[env["JOBSHEET_API_PORT"]] == "8090"
    assert env["JOBSHEET_API_URL"] == "http://${JOBSHEET_PUBLIC_HOST:-localhost}:8090"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_worker_and_api_share_the_par_secret_and_servers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, worker = services["api"]["environment"], services["worker"]["environment"]
    shared = (
        "JOBSHEET_PAR_SECRET",
        "JOBSHEET_LEDGER_KEY",
        "JOBSHEET_API_URL",
        "JOBSHEET_TEMPORAL_ADDRESS",
        "JOBSHEET_S3_ENDPOINT",
        "JOBSHEET_S3_PUBLIC_ENDPOINT",
        "JOBSHEET_S3_ACCESS_KEY",
        "JOBSHEET_S3_SECRET_KEY",
        "JOBSHEET_BUCKET",
    )
    for key in shared:
        assert api[key] == worker[key], key
    # No PAR secret is written into the file: compose refuses to start until .env sets one.
    assert re.fullmatch(r"\$\{JOBSHEET_PAR_SECRET:\?[^}]+\}", worker["JOBSHEET_PAR_SECRET"])


def test_every_setting_named_in_compose_exists(compose: dict[str, Any]) -> None:
    from jobsheet.settings import Settings

    known = {f"JOBSHEET_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("JOBSHEET_"):
                assert key in known, f"{name} sets {key}, which no setting reads"


def test_compute_pars_name_hosts_inside_the_network(compose: dict[str, Any]) -> None:
    """Compute runs in the worker container: its PARs must not name the users' public host."""
    services = compose["services"]
    for name in ("worker", "api"):
        env = services[name]["environment"]
        assert env["JOBSHEET_S3_COMPUTE_ENDPOINT"] == "minio:9000"
        assert env["JOBSHEET_API_COMPUTE_URL"] == "http://api:8090"
    assert "8090:8090" in services["api"]["ports"]


def test_payloads_are_encrypted_and_the_web_ui_decodes_through_the_api(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    api, worker = services["api"]["environment"], services["worker"]["environment"]
    # One key ring for the worker and the API, never written into the file.
    assert api["JOBSHEET_PAYLOAD_KEYS"] == worker["JOBSHEET_PAYLOAD_KEYS"]
    assert re.fullmatch(r"\$\{JOBSHEET_PAYLOAD_KEYS:\?[^}]+\}", worker["JOBSHEET_PAYLOAD_KEYS"])
    # The Web UI's codec endpoint is the API's, with the token the API checks.
    token = api["JOBSHEET_CODEC_TOKEN"]
    assert re.fullmatch(r"\$\{JOBSHEET_CODEC_TOKEN:\?[^}]+\}", token)
    assert "JOBSHEET_CODEC_TOKEN" not in worker
    endpoint = services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"]
    assert endpoint == f"http://${{JOBSHEET_PUBLIC_HOST:-localhost}}:8090/codec/{token}"
    # ...and answers the browser on the UI's published origin.
    ui_port = services["temporal-ui"]["ports"][0].split(":")[1]
    origins = api["JOBSHEET_CODEC_CORS_ORIGINS"].split(",")
    assert f"http://127.0.0.1:{ui_port}" in origins and f"http://localhost:{ui_port}" in origins
