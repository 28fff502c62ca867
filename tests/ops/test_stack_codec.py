"""The local stack keeps Temporal's payloads encrypted, shows them to the operator's Web UI
through the API's codec endpoint, and rotates its payload key without losing old payloads."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from jobsheet.core.payload_codec import KEY_ID_METADATA, is_encrypted, iter_payloads
from jobsheet.core.temporal import CODEC_TOKEN_FILE, PAYLOAD_KEYS_FILE, codec_token, connect
from jobsheet.identity.models import user_workflow_id
from jobsheet.ops.stack import Stack
from tests.servers import stack_cli, stack_settings


async def sealed_payloads(raw: Client, workflow_id: str) -> list[Payload]:
    """The encrypted payloads of a workflow's history, read without the keys."""
    history = await raw.get_workflow_handle(workflow_id).fetch_history()
    found = [p for event in history.events for p in iter_payloads(event)]
    assert found and all(is_encrypted(p) for p in found), workflow_id
    return found


async def decode_as_the_web_ui(endpoint: str, ui: str, payloads: list[Payload]) -> list[Payload]:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{endpoint}/decode",
            content=json_format.MessageToJson(Payloads(payloads=payloads)),
            headers={"Content-Type": "application/json", "X-Namespace": "default", "Origin": ui},
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == ui
    return list(json_format.ParseDict(answer.json(), Payloads()).payloads)


async def test_the_web_ui_reads_payloads_through_the_codec_and_rotation_keeps_them(
    tmp_path: Path,
) -> None:
    settings = stack_settings(tmp_path / "state")
    stack = Stack(settings)
    try:
        await asyncio.to_thread(stack.up)
        for name in (PAYLOAD_KEYS_FILE, CODEC_TOKEN_FILE):
            assert stat.S_IMODE((settings.state_dir / name).stat().st_mode) == 0o600, name

        # The Web UI was started with the API's codec endpoint, behind the stack's token.
        ui = f"http://127.0.0.1:{settings.temporal_ui_port}"
        async with httpx.AsyncClient() as http:
            ui_settings = (await http.get(f"{ui}/api/v1/settings")).json()
        endpoint = ui_settings["Codec"]["Endpoint"]
        assert endpoint == f"{settings.api_url}/codec/{codec_token(settings)}"

        # The operator's registry (made by `up`) is sealed in Temporal; the UI's codec opens it.
        raw = await Client.connect(settings.temporal_target, data_converter=pydantic_data_converter)
        before = await sealed_payloads(raw, user_workflow_id("operator"))
        opened = await decode_as_the_web_ui(endpoint, ui, before)
        assert not any(is_encrypted(p) for p in opened)
        assert any(b"operator" in p.data for p in opened)
        old_key = before[0].metadata[KEY_ID_METADATA].decode()

        rotated = stack_cli(settings, "stack", "rotate-payload-key", "--json")
        assert rotated.returncode == 0, rotated.stderr
        report = json.loads(rotated.stdout)
        assert report["keys"] == [report["current"], old_key]
        assert "base64" not in rotated.stdout and ":" not in report["current"]

        # New payloads use the new key; the running API opens both old and new.
        client = await connect(settings)
        workflow_id = f"after-rotation-{uuid.uuid4().hex[:8]}"
        await client.start_workflow(
            "NoSuchWorkflowType", "after rotation", id=workflow_id, task_queue="nobody-polls"
        )
        after = await sealed_payloads(raw, workflow_id)
        assert {p.metadata[KEY_ID_METADATA].decode() for p in after} == {report["current"]}
        [again] = await decode_as_the_web_ui(endpoint, ui, after[:1])
        assert b"after rotation" in again.data
        assert await decode_as_the_web_ui(endpoint, ui, before) == opened
        await client.get_workflow_handle(workflow_id).terminate("test over")
    finally:
        await asyncio.to_thread(stack.down)
