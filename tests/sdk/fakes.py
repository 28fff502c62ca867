"""A fake API for the SDK's unit tests: an ``httpx.MockTransport`` that records what it got."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jobsheet.core.settings import Settings
from jobsheet.identity.http_signing import RequestToVerify, verify_request
from jobsheet.identity.keys import Identity, generate_identity
from jobsheet.sdk import Client, RetryPolicy

API_URL = "http://api.test:8090"
NO_WAIT = RetryPolicy(attempts=4, first_delay=0.0, max_delay=0.0)

Handler = Callable[[httpx.Request], httpx.Response]
PAYEE = "provider-test"


@dataclass
class FakeApi:
    """Answers requests with ``handler`` and keeps every request it was sent (body read)."""

    handler: Handler
    identity: Identity
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if request.url.path == "/v1/calculations":
            return ok({"calculations": [], "payee": PAYEE})
        self.requests.append(request)
        return self.handler(request)

    def verify(self, request: httpx.Request) -> None:
        """Check ``request``'s signature as the API does (raises SignatureProblem)."""
        verify_request(
            RequestToVerify(request.method, str(request.url), dict(request.headers)),
            request.content,
            key=self.identity.public_record(),
        )


def fake_client(tmp_path: Path, handler: Handler, *, name: str = "alice") -> tuple[Client, FakeApi]:
    identity = generate_identity(name)
    api = FakeApi(handler, identity)
    settings = Settings(
        api_url=API_URL,
        user=name,
        config_dir=tmp_path / "config",
        state_dir=tmp_path / "state",
    )
    client = Client(settings, identity, retry=NO_WAIT, transport=httpx.MockTransport(api))
    return client, api


def refusal(status: int, error: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "message": message})


def ok(data: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(data).encode())
