"""Parsing Server-Sent Events, and ``Job.watch`` over a stream that breaks and is reopened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobsheet.contracts.api import WatchEvent
from jobsheet.jobs.models import JobSheet, JobState, TimelineEntry
from jobsheet.sdk import NotFound
from jobsheet.sdk.sse import ServerSentEvent, parse_events
from tests.sdk.fakes import fake_client, ok, refusal

UID = "job-" + "e" * 32
AT = "2026-01-01T00:00:0{}Z"


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_parse_events() -> None:
    stream = lines(
        ": keep-alive",
        "",
        "event: state",
        'data: {"a": 1}',
        "",
        "data:first",
        "data: second",
        "id: 7",
        "",
        "event: progress",
        "data: unfinished",
    )
    events = [event async for event in parse_events(stream)]
    assert events == [
        ServerSentEvent("state", '{"a": 1}'),
        ServerSentEvent("message", "first\nsecond", "7"),
    ]


def sse(*events: WatchEvent) -> bytes:
    return b"".join(
        f"event: {event.kind}\ndata: {event.model_dump_json()}\n\n".encode() for event in events
    )


def state(n: int, value: JobState) -> WatchEvent:
    return WatchEvent(kind="state", uid=UID, state=value, at=AT.format(n))


STATES = [
    JobState.SUBMITTED,
    JobState.AWAITING_UPLOAD,
    JobState.RUNNING,
    JobState.SETTLING,
    JobState.SUCCEEDED,
]


def sheet_at(n: int) -> JobSheet:
    """The sheet once the first ``n`` states were entered."""
    timeline = [TimelineEntry(state=s, at=AT.format(i)) for i, s in enumerate(STATES[:n])]
    return JobSheet(uid=UID, state=STATES[n - 1], timeline=timeline)


async def test_watch_reopens_a_broken_stream_without_repeating_states(tmp_path: Path) -> None:
    streams = iter(
        [
            # The first stream breaks off after two states and a progress step...
            sse(
                state(0, STATES[0]),
                state(1, STATES[1]),
                WatchEvent(
                    kind="progress",
                    uid=UID,
                    state=JobState.RUNNING,
                    progress={"phase": "running", "fraction": 0.5},
                ),
            ),
            # ...the second replays every state from the first, as the API does.
            sse(*(state(i, s) for i, s in enumerate(STATES))),
        ]
    )
    reads = iter([sheet_at(n) for n in (1, 2, 2, 3, 4, 5)])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(
                200, content=next(streams), headers={"content-type": "text/event-stream"}
            )
        return ok(next(reads).to_data())

    client, api = fake_client(tmp_path, answer)
    events = [event async for event in client.job(UID).watch(interval=0)]
    assert [(e.kind, e.state) for e in events] == [
        ("state", JobState.SUBMITTED),
        ("state", JobState.AWAITING_UPLOAD),
        ("progress", JobState.RUNNING),
        ("state", JobState.RUNNING),
        ("state", JobState.SETTLING),
        ("state", JobState.SUCCEEDED),
    ]
    assert events[2].progress is not None and events[2].progress.fraction == 0.5
    assert events[-1].terminal and events[-1].sheet.state == JobState.SUCCEEDED
    streams_opened = [r for r in api.requests if r.url.path.endswith("/events")]
    assert len(streams_opened) == 2
    for request in streams_opened:
        api.verify(request)
        assert request.headers["accept"] == "text/event-stream"


async def test_watch_an_unknown_job(tmp_path: Path) -> None:
    client, _ = fake_client(tmp_path, lambda request: refusal(404, "NotFound", "no job of yours"))
    with pytest.raises(NotFound, match="does not exist"):
        [event async for event in client.job(UID).watch()]


async def test_an_error_event_ends_the_watch(tmp_path: Path) -> None:
    body = b'event: error\ndata: {"error": "NotFound", "message": "no job of yours"}\n\n'
    client, _ = fake_client(tmp_path, lambda request: httpx.Response(200, content=body))
    with pytest.raises(NotFound):
        [event async for event in client.job(UID).watch()]


class BreaksOff(httpx.AsyncByteStream):
    """A response body that sends ``head`` and then loses the connection."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset by peer")


async def test_watch_survives_a_connection_lost_mid_stream(tmp_path: Path) -> None:
    bodies = iter(
        [
            BreaksOff(sse(state(0, STATES[0]))),
            httpx.ByteStream(sse(*(state(i, s) for i, s in enumerate(STATES)))),
        ]
    )
    reads = iter([sheet_at(n) for n in (1, 1, 2, 3, 4, 5)])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, stream=next(bodies))
        return ok(next(reads).to_data())

    client, _ = fake_client(tmp_path, answer)
    events = [event async for event in client.job(UID).watch(interval=0)]
    assert [event.state for event in events] == STATES
    assert events[-1].sheet.state == JobState.SUCCEEDED
