"""Temporal's one-shot jobs and entrypoint wrappers, run as compose runs them: the namespace job
against a real dev server (twice: it is idempotent), the wrappers with `env` as the command they
hand over to, the schema job with a stand-in for temporal-sql-tool (no PostgreSQL here)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from jobsheet.core import search_attributes
from tests.ops.deploy.compose_file import ROOT
from tests.ops.deploy.conftest import NamespaceJob, run_setup_namespace

KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


async def custom_attributes(client: Client, namespace: str) -> dict[str, int]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(response.custom_attributes)


async def test_namespace_job_creates_the_namespace_and_attributes_then_changes_nothing(
    namespace_job: NamespaceJob, temporal_env: WorkflowEnvironment
) -> None:
    first = namespace_job.first_run
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{namespace_job.namespace} is ready" in first.stdout
    client = temporal_env.client
    expected = {key.name: KEYWORD for key in search_attributes.ALL}
    assert await custom_attributes(client, namespace_job.namespace) == expected

    second = namespace_job.run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert await custom_attributes(client, namespace_job.namespace) == expected
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace_job.namespace)
    )
    assert described.config.workflow_execution_retention_ttl.ToSeconds() == 24 * 3600


async def test_namespace_job_refuses_an_attribute_of_another_type(
    namespace_job: NamespaceJob, temporal_env: WorkflowEnvironment
) -> None:
    namespace = f"deploy-text-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={"JobState": IndexedValueType.INDEXED_VALUE_TYPE_TEXT},
        )
    )
    result = run_setup_namespace(namespace_job.address, namespace)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "JobState exists in" in result.stderr and "other than Keyword" in result.stderr


def run_wrapper(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script), "env"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_web_ui_wrapper_builds_the_codec_endpoint_from_the_secret(tmp_path: Path) -> None:
    token = tmp_path / "jobsheet_codec_token"
    token.write_text("t0ken")
    script = ROOT / "deploy" / "temporal-ui" / "ui-entrypoint.sh"
    result = run_wrapper(
        script,
        {"JOBSHEET_API_URL": "http://jobs.example.org:8090/", "CODEC_TOKEN_FILE": str(token)},
    )
    assert result.returncode == 0, result.stderr
    assert "TEMPORAL_CODEC_ENDPOINT=http://jobs.example.org:8090/codec/t0ken" in result.stdout
    token.write_text("")
    empty = run_wrapper(script, {"JOBSHEET_API_URL": "http://x", "CODEC_TOKEN_FILE": str(token)})
    assert empty.returncode != 0 and "is empty" in empty.stderr


def test_server_wrapper_hands_the_password_file_to_the_image_entrypoint(tmp_path: Path) -> None:
    password = tmp_path / "postgres_password"
    password.write_text("pw-from-file")
    script = ROOT / "deploy" / "temporal" / "server-entrypoint.sh"
    result = run_wrapper(script, {"POSTGRES_PWD_FILE": str(password)})
    assert result.returncode == 0, result.stderr
    assert "POSTGRES_PWD=pw-from-file" in result.stdout.splitlines()
    assert run_wrapper(script, {}).returncode != 0


def test_schema_job_creates_and_migrates_both_databases(tmp_path: Path) -> None:
    """A stand-in temporal-sql-tool records each call: the job creates, sets up and updates
    both databases with the schema directories admin-tools ships, password from the file."""
    calls = tmp_path / "calls"
    tool = tmp_path / "bin" / "temporal-sql-tool"
    tool.parent.mkdir()
    tool.write_text(f'#!/bin/sh\necho "$SQL_PASSWORD $*" >> {calls}\n')
    tool.chmod(0o755)
    password = tmp_path / "postgres_password"
    password.write_text("pw")
    result = subprocess.run(
        ["sh", str(ROOT / "deploy" / "temporal" / "setup-schema.sh")],
        env={
            "PATH": f"{tool.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "POSTGRES_SEEDS": "postgresql",
            "POSTGRES_USER": "temporal",
            "DB_PORT": "5432",
            "SQL_PASSWORD_FILE": str(password),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    prefix = "pw --plugin postgres12 --ep postgresql -p 5432 -u temporal"
    schema = "/etc/temporal/schema/postgresql/v12"
    assert calls.read_text().splitlines() == [
        f"{prefix} --db temporal create",
        f"{prefix} --db temporal create",
        f"{prefix} --db temporal setup-schema -v 0.0",
        f"{prefix} --db temporal update-schema -d {schema}/temporal/versioned",
        f"{prefix} --db temporal_visibility create",
        f"{prefix} --db temporal_visibility setup-schema -v 0.0",
        f"{prefix} --db temporal_visibility update-schema -d {schema}/visibility/versioned",
    ]
