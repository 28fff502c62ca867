"""A bare signed HTTP client for API tests: what any RFC 9421 client would send, no SDK."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import httpx

from jobsheet.identity.http_signing import sign_request
from jobsheet.identity.keys import Identity


@dataclass
class Signed:
    """Sends requests to ``base`` signed as ``identity`` (unsigned when identity is None)."""

    base: str
    identity: Identity | None

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        created: dt.datetime | None = None,
        tamper: Any = None,
    ) -> httpx.Response:
        """Send ``body`` (JSON) signed; ``tamper(request)`` may change the request after signing."""
        content = b"" if body is None else json.dumps(body, default=str).encode()
        request_headers = {"content-type": "application/json"} if body is not None else {}
        request_headers.update(headers or {})
        async with httpx.AsyncClient(timeout=120) as http:
            request = http.build_request(
                method, self.base + path, content=content, headers=request_headers
            )
            if self.identity is not None:
                sign_request(request, self.identity, content, now=created)
            if tamper is not None:
                request = tamper(request)
            return await http.send(request)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.call("POST", path, body, **kwargs)
