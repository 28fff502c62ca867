"""Helpers for the contract book tests: workers, reading histories, replaying and recording them.

``JOBSHEET_RECORD_HISTORIES=1 .venv/bin/pytest tests/compute`` records the histories the book
tests name into tests/compute/histories/ (payloads in clear; another value than ``1`` names a
series, as for the job histories), which test_book_replay.py replays against today's code;
commit them with the change that made them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from tests.histories import in_clear
from workflows.compute_contract import ComputeContractWorkflow
from workflows.compute_service import ComputeServiceWorkflow

HISTORIES = Path(__file__).with_name("histories")
RECORD_ENV = "JOBSHEET_RECORD_HISTORIES"
TODAY: tuple[type, ...] = (ComputeServiceWorkflow, ComputeContractWorkflow)


@contextlib.asynccontextmanager
async def book_worker(
    client: Client, task_queue: str, workflows: tuple[type, ...] = TODAY
) -> AsyncIterator[Worker]:
    """A worker for the book (today's, unless ``workflows`` names a frozen one) and contract
    workflows; a nondeterministic replay fails the workflow at once instead of retrying its
    task until the test times out."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        workflow_failure_exception_types=[NondeterminismError],
    ) as worker:
        yield worker


def timer_events(history: WorkflowHistory) -> Counter[str]:
    """How many timers the history started, cancelled and saw fire."""
    names = {
        EventType.EVENT_TYPE_TIMER_STARTED: "started",
        EventType.EVENT_TYPE_TIMER_CANCELED: "cancelled",
        EventType.EVENT_TYPE_TIMER_FIRED: "fired",
    }
    return Counter(names[e.event_type] for e in history.events if e.event_type in names)


def patches(history: WorkflowHistory) -> list[str]:
    """The ids of the patches the history's markers record."""
    return [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]


def count(history: WorkflowHistory, event_type: EventType.ValueType) -> int:
    return sum(1 for e in history.events if e.event_type == event_type)


async def replays(client: Client, history: WorkflowHistory) -> None:
    """Today's workflows replay ``history`` (payloads opened by the client's converter)."""
    replayer = Replayer(workflows=list(TODAY), data_converter=client.data_converter)
    await replayer.replay_workflow(history)


async def record(client: Client, history: WorkflowHistory, name: str) -> None:
    """Keep ``history`` as ``histories/<name>.json`` when recording: ``JOBSHEET_RECORD_HISTORIES=1``
    overwrites, any other value names a series (``<name>-<series>.json``) beside the old ones."""
    series = os.environ.get(RECORD_ENV)
    if not series:
        return
    HISTORIES.mkdir(exist_ok=True)
    stem = name if series == "1" else f"{name}-{series}"
    (HISTORIES / f"{stem}.json").write_text(in_clear(history, client).to_json())
