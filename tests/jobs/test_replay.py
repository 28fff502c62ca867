"""Determinism: recorded histories of every path replay against today's workflow code.

The histories in tests/jobs/histories/ were recorded from the job tests with
``JOBSHEET_RECORD_HISTORIES=1 .venv/bin/pytest tests/jobs`` (lifecycle v2 replaced the workflow
outright, so they start with v2; from v2 on, old histories stay and new ones join them). A change that makes the workflow
take a different path for the same history fails here; such a change needs
``workflow.patched`` (or a new workflow type) before it may land.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.core.temporal import data_converter
from workflows.job_sheet import JobSheetWorkflow

HISTORIES = Path(__file__).with_name("histories")
FILES = sorted(HISTORIES.glob("*.json"))
REPLAY_TIMEOUT_SECONDS = 60


def _history(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    workflow_id = started.get("workflowId") or path.stem
    return WorkflowHistory.from_json(workflow_id, data)


def end_state(path: Path) -> str | None:
    """How the recorded job ended: the state of the final sheet its workflow completed with."""
    for event in json.loads(path.read_text())["events"]:
        attributes = event.get("workflowExecutionCompletedEventAttributes")
        if attributes:
            payload = attributes["result"]["payloads"][0]["data"]
            return str(json.loads(base64.b64decode(payload))["state"])
    return None


def test_every_path_is_recorded() -> None:
    """The fixtures cover each way a job ends."""
    ends = {end_state(path) for path in FILES}
    assert ends >= {"succeeded", "failed", "timed_out", "expired", "cancelled", "rejected"}


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
async def test_history_replays(path: Path) -> None:
    # The product's converter: what it did not encrypt (every recorded payload) it reads as is.
    converter = data_converter(PayloadKeyRing.generate())
    replayer = Replayer(workflows=[JobSheetWorkflow], data_converter=converter)
    # A history whose local activities no longer match can leave the replay waiting for one
    # forever: fail in time instead, naming the history.
    await asyncio.wait_for(replayer.replay_workflow(_history(path)), REPLAY_TIMEOUT_SECONDS)
