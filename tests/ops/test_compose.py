"""docker-compose.yml is valid compose and wires the services the way an operator needs them.

No Docker engine runs here: these read the file as compose does (tests/ops/deploy/compose_file.py).
tests/ops/deploy/ runs its one-shot jobs and every jobsheet service for real.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from typing import Any

import pytest
import yaml

from tests.ops.deploy.compose_file import (
    COMPOSE,
    JOBSHEET_IMAGE,
    METRICS_PORT,
    ROOT,
    bind_mounts,
    interpolate,
    load,
    python_services,
    secret_targets,
)

# What each image really contains to probe health with (read from each image's Dockerfile:
# temporalio/temporal docker/targets/*.Dockerfile and temporalio/ui server/Dockerfile are Alpine
# with busybox; MinIO's Dockerfile.release copies a static curl; prom/prometheus is built on
# busybox; grafana/grafana's default variant is Alpine; ours is python:3.11-slim).
HEALTH_BINARIES = {
    "postgres": {"pg_isready"},
    "temporalio/server": {"nc", "wget"},
    "temporalio/ui": {"wget"},
    "quay.io/minio/minio": {"curl", "mc"},
    "prom/prometheus": {"wget"},
    "grafana/grafana": {"wget"},
    "jobsheet": {"python"},
}
# The only ports published, and where.
PUBLISHED = {
    "api": ["8090:8090"],
    "minio": ["9000:9000", "127.0.0.1:9001:9001"],
    "temporal-ui": ["127.0.0.1:8080:8080"],
    "grafana": ["127.0.0.1:3000:3000"],
}
ONE_SHOT = {"temporal-schema", "temporal-namespace", "minio-init"}
# Secrets by service: each role gets what its code reads (settings.s3_credentials(),
# par_signing_key(), ledger_private_key(), codec_token(), the payload key ring) and no more.
S3 = {"jobsheet_s3_access_key", "jobsheet_s3_secret_key"}
SECRETS = {
    "postgresql": {"postgres_password"},
    "temporal-schema": {"postgres_password"},
    "temporal": {"postgres_password"},
    "temporal-ui": {"jobsheet_codec_token"},
    "minio": {"minio_root_user", "minio_root_password"},
    "minio-init": {"minio_root_user", "minio_root_password", *S3},
    "api": {*S3, "jobsheet_par_secret", "jobsheet_payload_keys", "jobsheet_codec_token"},
    "worker-jobs": {*S3, "jobsheet_par_secret", "jobsheet_payload_keys"},
    "worker-ledger": {*S3, "jobsheet_ledger_key", "jobsheet_payload_keys"},
    "compute-standard": {"jobsheet_payload_keys"},
    "compute-science": {"jobsheet_payload_keys"},
    "grafana": {"grafana_admin_password"},
}
SECRET_WORDS = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY|KEYS")
# Names that match SECRET_WORDS but hold no secret: a directory, and public keys.
NOT_SECRETS = {"JOBSHEET_SECRETS_DIR", "JOBSHEET_OPERATOR_PUBLIC_KEYS"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def image_name(service: dict[str, Any]) -> str:
    image = str(service["image"])
    return "jobsheet" if image == JOBSHEET_IMAGE else image.split("@")[0].rsplit(":", 1)[0]


def test_validates_against_the_compose_spec_schema() -> None:
    checker = sys.executable.rsplit("/", 1)[0] + "/check-jsonschema"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_service_per_role_and_per_compute_service(services: dict[str, Any]) -> None:
    assert set(services) == {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "minio",
        "minio-init",
        "api",
        "worker-jobs",
        "worker-ledger",
        "compute-standard",
        "compute-science",
        "prometheus",
        "grafana",
    }
    commands = {name: s["command"] for name, s in python_services({"services": services}).items()}
    assert commands.pop("api") == ["python", "-m", "jobsheet.api"]
    assert commands.pop("worker-jobs") == ["python", "worker.py", "--role", "jobs"]
    assert commands.pop("worker-ledger") == ["python", "worker.py", "--role", "ledger"]
    calculations = tomllib.loads((ROOT / "calculations" / "calculations.toml").read_text())
    assert commands == {
        f"compute-{name}": ["python", "worker.py", "--role", "compute", "--service", name]
        for name in calculations["services"]
    }


def test_images_are_pinned_and_minio_by_digest(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        assert re.search(r":[\w.-]+(@sha256:[0-9a-f]{64})?$", image), f"{name}: {image}"
        assert not re.search(r":latest\b", image), f"{name}: {image}"
        assert "auto-setup" not in image, f"{name}: the deprecated auto-setup image"
        if "minio" in image:
            assert re.fullmatch(
                r"quay\.io/minio/minio:RELEASE\.[0-9TZ-]+@sha256:[0-9a-f]{64}", image
            ), f"{name}: MinIO must come from quay.io, pinned by tag and digest: {image}"
    # The schema job's tools match the server they set up.
    versions = {services[n]["image"].split(":")[1] for n in ("temporal", "temporal-schema")}
    assert len(versions) == 1 and services["temporal-namespace"]["image"].endswith(versions.pop())


def test_only_the_api_and_s3_are_published_beyond_loopback(services: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == PUBLISHED
    for name, ports in published.items():
        for port in ports:
            public = not port.startswith("127.0.0.1:")
            assert not public or port in ("8090:8090", "9000:9000"), f"{name} publishes {port}"


def test_secrets_are_files_and_no_secret_is_in_the_environment(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = compose["secrets"]
    for name, secret in declared.items():
        assert secret == {"file": f"./deploy/secrets/{name}"}, name
    # deploy/make-secrets writes exactly the secrets compose mounts.
    script = (ROOT / "deploy" / "make-secrets").read_text()
    assert set(re.findall(r"^put (\w+) ", script, re.M)) == set(declared)
    for name, service in services.items():
        assert set(secret_targets(service)) == SECRETS.get(name, set()), name
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key) and key not in NOT_SECRETS:
                assert key.endswith("FILE"), f"{name} passes {key} in its environment"
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}={value}"
    text = COMPOSE.read_text()
    assert not re.search(r"(?i)(password|secret|token)\s*:\s*['\"]?[A-Za-z0-9+/=]{12,}", text)


def test_compute_workers_hold_the_payload_keys_only_where_calculations_cannot_reach(
    services: dict[str, Any],
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "install -d -m 0700 -o root -g root /etc/jobsheet/secrets" in dockerfile
    for name, service in python_services({"services": services}).items():
        env = service["environment"]
        if not name.startswith("compute-"):
            assert env["JOBSHEET_SECRETS_DIR"] == "/run/secrets", name
            continue
        assert secret_targets(service) == {
            "jobsheet_payload_keys": "/etc/jobsheet/secrets/jobsheet_payload_keys"
        }
        assert env["JOBSHEET_SECRETS_DIR"] == "/etc/jobsheet/secrets"
        # No S3, no PAR, no public address: compute works through the PARs a run carries.
        assert not [key for key in env if "S3" in key or "PAR" in key or "API" in key], env
        assert service["depends_on"] == {
            "temporal-namespace": {"condition": "service_completed_successfully"}
        }


def test_jobsheet_services_run_under_init_and_drop_privileges(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if service.get("image") != JOBSHEET_IMAGE:
            continue
        assert service["init"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name


def test_health_checks_use_binaries_each_image_has(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no" and "healthcheck" not in service, name
            continue
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec form, no shell needed"
        assert test[1] in HEALTH_BINARIES[image_name(service)], f"{name} runs {test[1]}"
    for name, service in python_services({"services": services}).items():
        probe = " ".join(service["healthcheck"]["test"])
        port = 8090 if name == "api" else METRICS_PORT
        assert f"http://127.0.0.1:{port}/healthz" in probe, name
        if name != "api":
            assert service["environment"]["JOBSHEET_METRICS_PORT"] == str(METRICS_PORT)


def test_start_order(services: dict[str, Any]) -> None:
    def after(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    done, healthy = "service_completed_successfully", "service_healthy"
    assert after("temporal-schema") == {"postgresql": healthy}
    assert after("temporal") == {"temporal-schema": done}
    assert after("temporal-namespace") == {"temporal": healthy}
    assert after("minio-init") == {"minio": healthy}
    for name in ("api", "worker-jobs", "worker-ledger"):
        assert after(name) == {"temporal-namespace": done, "minio-init": done}, name
    # Only Temporal and its schema job reach PostgreSQL.
    for name, service in services.items():
        on_db = "temporal-db" in service.get("networks", [])
        assert on_db == (name in ("postgresql", "temporal-schema", "temporal")), name


def test_temporal_server_is_configured_for_production(services: dict[str, Any]) -> None:
    temporal = services["temporal"]
    env = temporal["environment"]
    assert env["NUM_HISTORY_SHARDS"] == "512"
    assert re.search(r"History shards: .*can NEVER change", COMPOSE.read_text(), re.S)
    assert (
        "POSTGRES_PWD" not in env and env["POSTGRES_PWD_FILE"] == "/run/secrets/postgres_password"
    )
    # The wrapper sets POSTGRES_PWD from the file, then runs the image's own CMD.
    assert temporal["entrypoint"] == ["/bin/sh", "/opt/jobsheet/server-entrypoint.sh"]
    assert temporal["command"] == ["/etc/temporal/entrypoint.sh"]
    mounts = bind_mounts(temporal)
    assert mounts[env["DYNAMIC_CONFIG_FILE_PATH"]].is_file()
    assert mounts["/opt/jobsheet/server-entrypoint.sh"].is_file()
    postgres = services["postgresql"]["environment"]
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_search_attributes_match_the_code(services: dict[str, Any]) -> None:
    from jobsheet.core import search_attributes

    job = services["temporal-namespace"]
    script = bind_mounts(job)[job["entrypoint"][1]].read_text()
    names = re.search(r'search_attributes="([^"]+)"', script)
    assert names is not None
    assert names.group(1).split() == [key.name for key in search_attributes.ALL]
    assert job["environment"]["TEMPORAL_NAMESPACE"] == "default"


def test_web_ui_decodes_through_the_api_with_a_token_from_its_secret(
    services: dict[str, Any],
) -> None:
    ui, api = services["temporal-ui"], services["api"]
    env = ui["environment"]
    assert "TEMPORAL_CODEC_ENDPOINT" not in env
    assert env["CODEC_TOKEN_FILE"] == secret_targets(ui)["jobsheet_codec_token"]
    assert env["JOBSHEET_API_URL"] == api["environment"]["JOBSHEET_API_URL"]
    # The wrapper ends by running the image's real entrypoint (WORKDIR /home/ui-server).
    assert ui["entrypoint"] == ["/bin/sh", "/opt/jobsheet/ui-entrypoint.sh", "./start-ui-server.sh"]
    origins = api["environment"]["JOBSHEET_CODEC_CORS_ORIGINS"].split(",")
    ui_port = ui["ports"][0].split(":")[2]
    assert {f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"} <= set(origins)


def test_urls_signed_for_users_name_the_published_ports(services: dict[str, Any]) -> None:
    dotenv = {"JOBSHEET_PUBLIC_HOST": "jobs.example.org"}
    for name in ("api", "worker-jobs"):
        env = services[name]["environment"]
        assert interpolate(env["JOBSHEET_S3_PUBLIC_ENDPOINT"], dotenv) == "jobs.example.org:9000"
        assert interpolate(env["JOBSHEET_API_URL"], dotenv) == "http://jobs.example.org:8090"
        # Compute runs inside the network: its PARs name the internal hosts.
        assert env["JOBSHEET_S3_COMPUTE_ENDPOINT"] == "minio:9000"
        assert env["JOBSHEET_API_COMPUTE_URL"] == "http://api:8090"
    server_url = services["minio"]["environment"]["MINIO_SERVER_URL"]
    assert interpolate(server_url, dotenv) == "http://jobs.example.org:9000"
    assert services["api"]["environment"]["JOBSHEET_API_HOST"] == "0.0.0.0"


def test_calculations_are_mounted_read_only_from_the_host(services: dict[str, Any]) -> None:
    for name in ("api", "worker-jobs", "compute-standard", "compute-science"):
        service = services[name]
        assert "./calculations:/etc/jobsheet/calculations:ro" in service["volumes"], name
        path = service["environment"]["JOBSHEET_CALCULATIONS_FILE"]
        assert (
            bind_mounts(service)["/etc/jobsheet/calculations"] / path.rsplit("/", 1)[1]
        ).is_file()


def test_every_setting_named_in_compose_exists(services: dict[str, Any]) -> None:
    from jobsheet.core.settings import Settings

    known = {f"JOBSHEET_{name.upper()}" for name in Settings.model_fields} | {
        "JOBSHEET_SECRETS_DIR"
    }
    for name, service in services.items():
        for key in service.get("environment", {}):
            if key.startswith("JOBSHEET_") and name not in ("temporal-ui",):
                assert key in known, f"{name} sets {key}, which no setting reads"


def test_prometheus_scrapes_every_jobsheet_process_and_grafana_is_provisioned(
    services: dict[str, Any],
) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Found by DNS: every replica of a scaled service is scraped.
    (discovery,) = jobs["jobsheet"]["dns_sd_configs"]
    assert set(discovery["names"]) == set(python_services({"services": services}))
    assert (discovery["type"], discovery["port"]) == ("A", METRICS_PORT)
    # A target label must not shadow a label jobsheet's metrics carry ("service").
    target_labels = {rule["target_label"] for rule in jobs["jobsheet"]["relabel_configs"]}
    grouped = {"service", "state", "route", "status", "job"}
    for dashboard in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"):
        for labels in re.findall(r"by \(([^)]*)\)", dashboard.read_text()):
            grouped |= {label.strip() for label in labels.split(",")}
    assert not target_labels & grouped
    assert jobs["temporal"]["static_configs"][0]["targets"] == [
        services["temporal"]["environment"]["PROMETHEUS_ENDPOINT"].replace("0.0.0.0", "temporal")
    ]
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert datasource["datasources"][0]["uid"] == "prometheus"
    dashboards = yaml.safe_load((provisioning / "dashboards" / "jobsheet.yml").read_text())
    path = dashboards["providers"][0]["options"]["path"]
    assert mounts[path] == ROOT / "deploy" / "grafana" / "dashboards"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == (
        "/run/secrets/grafana_admin_password"
    )
