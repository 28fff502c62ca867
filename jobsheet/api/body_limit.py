"""Refuse request bodies over the configured size with 413, before anyone reads them whole."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobsheet.api.errors import refusal_response


class BodyLimit:
    """ASGI middleware: a declared ``Content-Length`` over ``limit`` is refused at once; a body
    sent without one is counted as it arrives and refused (413) when it passes ``limit``."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    @property
    def message(self) -> str:
        return f"the request body is over the limit of {self.limit} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.limit + 1
                if declared > self.limit:
                    response = refusal_response(413, "TooLarge", self.message)
                    await response(scope, receive, send)
                    return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, detail=self.message)
            return message

        await self.app(scope, counting_receive, send)
