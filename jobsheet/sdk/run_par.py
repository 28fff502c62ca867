"""Calling a run PAR: ``POST <run URL>`` on the public API, with no credential but the URL.

The API answers 200/202 with JSON when the run starts (or had started), and refuses with
404 (unknown job or wrong token), 409 (wrong state), 410 (expired), 422 (input missing or not
what the request promised) or 429 (too many calls), each with a JSON ``message``.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel

from jobsheet.sdk.errors import RunRefused, Unavailable

TIMEOUT = httpx.Timeout(120.0, connect=10.0)

MEANINGS = {
    404: "no such job, or the run PAR's token is wrong",
    409: "the job is not in a state to run",
    410: "the run PAR has expired",
    422: "the input is missing or is not what the request promised",
    429: "too many calls to this run PAR; try again later",
}


class RunTriggered(BaseModel):
    """The API's answer to a run trigger."""

    status: int
    uid: str = ""
    state: str = ""
    started: bool = True
    message: str = ""


def run_uid(url: str) -> str:
    """The job uid in a run PAR URL (``.../par/run/<uid>/<token>``)."""
    parts = url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def call_run_par(url: str, *, http: httpx.AsyncClient | None = None) -> RunTriggered:
    """POST the run PAR; raise :class:`RunRefused` with the status and message on refusal."""
    client = http or httpx.AsyncClient(timeout=TIMEOUT)
    try:
        response = await client.post(url)
    except httpx.TransportError as exc:
        raise Unavailable(f"the jobsheet API could not be reached: {exc}") from None
    finally:
        if http is None:
            await client.aclose()
    body = _body(response)
    if response.status_code in (200, 202):
        return RunTriggered(
            status=response.status_code,
            uid=str(body.get("uid") or run_uid(url)),
            state=str(body.get("state") or ""),
            started=bool(body.get("started", True)),
            message=str(body.get("message") or ""),
        )
    message = str(body.get("message") or body.get("detail") or "").strip()
    if not message:
        message = MEANINGS.get(response.status_code, response.reason_phrase or "refused")
    reason = str(body.get("error") or f"HTTP{response.status_code}")
    raise RunRefused(
        f"the run was refused (HTTP {response.status_code}): {' '.join(message.split())}",
        status=response.status_code,
        reason=reason,
    )
