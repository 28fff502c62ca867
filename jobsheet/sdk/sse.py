"""Reading a ``text/event-stream`` (Server-Sent Events, as the HTML standard defines them).

Only what ``GET /v1/jobs/{uid}/events`` needs: ``event``, ``data`` (several lines joined by
``\\n``) and ``id`` fields, comments (keep-alives) skipped, an event dispatched at a blank line, and
an unfinished event at the end of the stream dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str = ""


async def parse_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """The events in a stream of lines (without their line endings, as ``aiter_lines`` gives)."""
    event = ""
    data: list[str] = []
    last_id = ""
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
