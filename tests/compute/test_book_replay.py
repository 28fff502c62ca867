"""Determinism: recorded histories of the contract book and of contract workflows replay against
today's code.

They were recorded from the tests that name them (tests/compute/books.py: ``record``) with
``JOBSHEET_RECORD_HISTORIES=1 .venv/bin/pytest tests/compute``, payloads in clear; those ending
``-answers-at-once`` again after the book's ``contract-book-answers-at-once`` patch (the older
ones replay the path before it). Those named
``book-records-*`` are runs begun on the book as deployed before a patch and moved mid-run to
today's worker: they replay only because today's code keeps their path behind
``workflow.patched``. A change to the commands of either workflow that fails here needs a patch.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.core.temporal import data_converter
from tests.compute.books import HISTORIES, TODAY

FILES = sorted(HISTORIES.glob("*.json"))
RECORDED = {
    "contract-released",
    "contract-expired",
    "book-reserve-release-reserve-again",
    "book-continued-as-new",
    "book-duplicate-end-ignored",
    "book-carrying-records",
    "book-records-timer-on-earliest-moved-to-today",
    "book-records-expiry-moved-to-today",
    "book-records-before-timer-patch-moved-to-today",
    "book-answers-at-once",
}
REPLAY_TIMEOUT_SECONDS = 60


def _history(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started.get("workflowId") or path.stem, data)


def test_every_kind_of_history_is_recorded() -> None:
    assert {path.stem for path in FILES} >= RECORDED


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
async def test_history_replays(path: Path) -> None:
    # The product's converter: what it did not encrypt (every recorded payload) it reads as is.
    replayer = Replayer(
        workflows=list(TODAY), data_converter=data_converter(PayloadKeyRing.generate())
    )
    await asyncio.wait_for(replayer.replay_workflow(_history(path)), REPLAY_TIMEOUT_SECONDS)
