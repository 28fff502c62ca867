"""``jobsheet stack``: real servers in a temporary state directory, started and stopped cleanly."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import stat
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from jobsheet.core import processes
from jobsheet.core.objectstore import internal_client
from jobsheet.core.temporal import connect
from jobsheet.identity import registry
from jobsheet.identity.keys import load_identity
from jobsheet.ledger import operations as ledger
from jobsheet.ops.stack import Stack
from tests.process_groups import group_members
from tests.servers import stack_cli, stack_settings


@pytest.fixture
def stack(tmp_path: Path):
    stack = Stack(stack_settings(tmp_path / "state"))
    try:
        yield stack
    finally:
        stack.down()


SERVICES = ["temporal", "s3", "worker", "api"]


async def test_up_status_down_and_data_survives(stack: Stack) -> None:
    settings = stack.settings
    statuses = await asyncio.to_thread(stack.up)
    assert [s.name for s in statuses] == SERVICES
    assert all(s.running and s.answering for s in statuses)
    first_pids = {s.name: s.pid for s in statuses}
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{settings.api_url}/healthz")).json() == {"ok": True}

    creds = settings.state_dir / "s3-credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    operator_key = settings.state_dir / "keys" / "operator.json"
    assert stat.S_IMODE(operator_key.stat().st_mode) == 0o600

    # The operator side exists: the operator user owns the provider account.
    client = await connect(settings)
    provider = await ledger.balance(client, settings.provider_account)
    assert provider.owner == "operator" and provider.balance == 0
    keys = await registry.user_keys(client, "operator")
    assert [key.key_id for key in keys] == [
        load_identity("operator", config_dir=settings.state_dir).key_id
    ]

    # A second up is a no-op: same processes, same operator, same account.
    again = await asyncio.to_thread(stack.up)
    assert {s.name: s.pid for s in again} == first_pids
    assert stack.operator["created_user"] is False
    assert stack.operator["created_account"] is False

    # Leave data in both servers.
    s3 = internal_client(settings)
    assert s3.bucket_exists(settings.bucket)
    s3.put_object(settings.bucket, "kept.txt", io.BytesIO(b"kept"), 4)
    workflow_id = f"kept-{uuid.uuid4()}"
    await client.start_workflow("NoSuchWorkflowType", id=workflow_id, task_queue="nobody-polls")

    stopped = await asyncio.to_thread(stack.down)
    assert stopped == list(reversed(SERVICES))
    for pid in first_pids.values():
        assert pid is not None
        assert group_members(pid) == []
    assert not any(s.running for s in stack.status())
    for port in (settings.temporal_port, settings.s3_port, settings.api_port):
        assert not processes.tcp_answers(port)

    # Up again: the object and the workflow are still there; the metrics URLs stay the same.
    again = await asyncio.to_thread(stack.up)
    assert [s.endpoints["metrics"] for s in again if s.name in ("worker", "api")] == [
        s.endpoints["metrics"] for s in statuses if s.name in ("worker", "api")
    ]
    response = internal_client(settings).get_object(settings.bucket, "kept.txt")
    assert response.read() == b"kept"
    response.close()
    client = await connect(settings)
    description = await client.get_workflow_handle(workflow_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    await client.get_workflow_handle(workflow_id).terminate("test over")
    assert stack.operator["created_account"] is False
    assert (await ledger.balance(client, settings.provider_account)).owner == "operator"


@pytest.mark.parametrize("port_name", ["s3_port", "api_port"])
def test_port_in_use_is_named(stack: Stack, port_name: str) -> None:
    port = getattr(stack.settings, port_name)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(processes.PortInUse, match=str(port)):
            stack.up()
    # Nothing was started: the ports are checked before any service starts.
    assert not any(s.running for s in stack.status())


def test_cli_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    settings = stack_settings(state_dir)
    try:
        up = stack_cli(settings, "stack", "up", "--json")
        assert up.returncode == 0, up.stderr
        services = {s["name"]: s for s in json.loads(up.stdout)}
        assert list(services) == SERVICES
        assert all(service["answering"] for service in services.values())
        assert "secret" not in up.stdout + up.stderr
        status = stack_cli(settings, "stack", "status", "--json")
        assert status.returncode == 0
        # The worker and the API each serve Prometheus metrics (the SDK's and jobsheet's).
        endpoints = {s["name"]: s["endpoints"] for s in json.loads(status.stdout)}
        for name in ("worker", "api"):
            url = endpoints[name]["metrics"]
            assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
            metrics = httpx.get(url, timeout=10).text
            process = "worker-all" if name == "worker" else "api"
            assert f'jobsheet_build_info{{process="{process}"' in metrics
            assert "jobsheet_money_held_cents_total" in metrics
            assert httpx.get(url.removesuffix("/metrics") + "/healthz").status_code == 200
        assert "temporal_request{" in httpx.get(endpoints["worker"]["metrics"]).text
        assert "metrics:" in stack_cli(settings, "stack", "status").stdout
        logs = stack_cli(settings, "stack", "logs", "nope")
        assert logs.returncode == 2
        assert logs.stderr.strip().splitlines() == [
            "error: unknown service 'nope'; choose from temporal, s3, worker, api"
        ]
        worker_log = stack_cli(settings, "stack", "logs", "worker")
        assert worker_log.returncode == 0 and "worker ready:" in worker_log.stdout
    finally:
        down = stack_cli(settings, "stack", "down", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["stopped"] == list(reversed(SERVICES))
    after = stack_cli(settings, "stack", "status", "--json")
    assert after.returncode == 5
    assert not any(s["running"] for s in json.loads(after.stdout))
