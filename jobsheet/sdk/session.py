"""The SDK's one door to jobsheet: signed requests to the public API, retried when safe.

Every ``/v1`` request is built once per attempt with ``httpx``, signed with the user's Ed25519
key over the exact body bytes (:func:`jobsheet.identity.http_signing.sign_request`), and sent to the URL
that was signed. A call whose answer was lost (a transport error, or 502/503/504) is sent again
a few times with backoff: the *same* body bytes and the same ``Idempotency-Key``, with a fresh
signature envelope, so the API answers a retried submit with the job it already started.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from jobsheet.contracts.api import IDEMPOTENCY_KEY_HEADER
from jobsheet.identity.http_signing import sign_request
from jobsheet.identity.keys import Identity
from jobsheet.sdk.api_errors import UNAVAILABLE_STATUSES, error_from_response
from jobsheet.sdk.errors import BadInput, JobsheetError, Unavailable

TIMEOUT = httpx.Timeout(120.0, connect=10.0)
STREAM_TIMEOUT = httpx.Timeout(10.0, read=300.0)
"""For an event stream: quiet for up to five minutes between events before reconnecting."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a call whose answer was lost is sent again, and how long to wait in between."""

    attempts: int = 4
    first_delay: float = 0.5
    max_delay: float = 4.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), with jitter."""
        base = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        return base * random.uniform(0.75, 1.25)


@dataclass(frozen=True)
class Answer:
    """The API's successful answer to a call, and how many attempts it took."""

    status: int
    data: Any
    attempts: int
    what: str

    def parse(self, model: type[M]) -> M:
        """The answer as ``model``; an error naming the call when it is not one."""
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise JobsheetError(
                f"{self.what}: the API answered something that is not a {model.__name__} ({exc})",
                reason="BadAnswer",
            ) from None


IdentitySource = Callable[[], Identity]


class ApiSession:
    """Signed calls to the API at ``base_url`` as the identity ``signer`` returns.

    ``signer`` is asked for the key when a signed call is made (so reading the key file waits until
    it is needed). The ``httpx.AsyncClient`` is made on first use, on the caller's event loop.
    """

    def __init__(
        self,
        base_url: str,
        signer: IdentitySource,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.retry = retry or RetryPolicy()
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=TIMEOUT, transport=self._transport)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _build(
        self,
        method: str,
        path: str,
        *,
        body: bytes,
        params: Mapping[str, str] | None,
        signed: bool,
        idempotency_key: str | None,
        accept: str = "application/json",
    ) -> httpx.Request:
        headers = {"Accept": accept}
        if body:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers[IDEMPOTENCY_KEY_HEADER] = idempotency_key
        try:
            request = self.http.build_request(
                method,
                self.base_url + path,
                params=dict(params) if params else None,
                content=body or None,
                headers=headers,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise BadInput(
                f"JOBSHEET_API_URL {self.base_url!r} is not a usable URL: {exc}",
                reason="BadApiUrl",
            ) from None
        if signed:
            sign_request(request, self.signer(), body)
        return request

    async def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: BaseModel | None = None,
        params: Mapping[str, str | None] | None = None,
        signed: bool = True,
        idempotency_key: str | None = None,
        missing: str = "",
    ) -> Answer:
        """Send one logical call (retrying lost answers); its answer, or the SDK error for the
        API's refusal. ``what`` names the call in messages ("submitting the job")."""
        content = body.model_dump_json().encode() if body is not None else b""
        query = {name: value for name, value in (params or {}).items() if value is not None}
        attempt = 0
        while True:
            attempt += 1
            request = self._build(
                method,
                path,
                body=content,
                params=query,
                signed=signed,
                idempotency_key=idempotency_key,
            )
            try:
                response = await self.http.send(request)
            except httpx.UnsupportedProtocol as exc:
                raise BadInput(
                    f"JOBSHEET_API_URL {self.base_url!r} is not a usable URL: {exc}",
                    reason="BadApiUrl",
                ) from None
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    raise self.unreachable(what, exc) from None
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if response.status_code in UNAVAILABLE_STATUSES and attempt < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if response.status_code >= 400:
                raise error_from_response(response, what=what, missing=missing)
            try:
                data = response.json() if response.content else None
            except ValueError:
                raise JobsheetError(
                    f"{what}: the API answered HTTP {response.status_code} without JSON",
                    reason="BadAnswer",
                ) from None
            return Answer(response.status_code, data, attempt, what)

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, what: str, missing: str = ""
    ) -> AsyncIterator[httpx.Response]:
        """A signed ``GET`` whose answer is read as it arrives (an event stream); connecting is
        retried like :meth:`call`, reading is the caller's."""
        attempt = 0
        while True:
            attempt += 1
            request = self._build(
                "GET",
                path,
                body=b"",
                params=None,
                signed=True,
                idempotency_key=None,
                accept="text/event-stream",
            )
            request.extensions["timeout"] = STREAM_TIMEOUT.as_dict()
            try:
                response = await self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    raise self.unreachable(what, exc) from None
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if response.status_code in UNAVAILABLE_STATUSES and attempt < self.retry.attempts:
                await response.aclose()
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            break
        try:
            if response.status_code >= 400:
                await response.aread()
                raise error_from_response(response, what=what, missing=missing)
            yield response
        finally:
            await response.aclose()

    def unreachable(self, what: str, exc: Exception) -> Unavailable:
        detail = str(exc) or type(exc).__name__
        return Unavailable(
            f"{what} failed: the jobsheet API at {self.base_url} could not be reached ({detail})",
            reason="Unreachable",
        )
