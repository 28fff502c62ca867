"""The codec endpoint: Temporal's remote codec protocol, so the operator's Web UI shows payloads.

Temporal holds every payload encrypted (jobsheet/core/payload_codec.py); the Web UI asks this
endpoint to open them for the operator's browser. The protocol: ``POST .../decode`` and
``POST .../encode`` with ``{"payloads": [...]}`` in protobuf's JSON form and an
``X-Namespace`` header, from the UI's origin (CORS, with an OPTIONS preflight).

Operator only, by a bearer token the stack generates (``codec-token`` in the state dir, or
``JOBSHEET_CODEC_TOKEN``), never by a user's signature:

- ``/codec/{token}/decode``: the token in the path, for the Web UI, which sends no credential
  of its own (``temporal server start-dev --ui-codec-endpoint URL`` takes a URL and nothing
  else);
- ``/codec/decode`` with ``Authorization: Bearer <token>``: for the ``temporal`` CLI
  (``--codec-endpoint .../codec --codec-auth "Bearer <token>"``) and scripts.

A browser on any other origin is refused (403) and gets no CORS grant; a missing or wrong token
gets 401 and opens nothing. See docs/payload-encryption.md for why.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from jobsheet.api.errors import refusal_response
from jobsheet.core.payload_codec import EncryptionCodec, PayloadKeyError
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import codec_token, payload_key_ring

ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def ui_origins(settings: Settings) -> frozenset[str]:
    """The Web UI origins whose browsers may call the endpoint."""
    configured = [o.strip().rstrip("/") for o in settings.codec_cors_origins.split(",")]
    chosen = [o for o in configured if o]
    if not chosen:
        port = settings.temporal_ui_port
        chosen = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    return frozenset(chosen)


class CodecEndpoint:
    """Opens and seals payloads for the operator; keys and token are read on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._origins = ui_origins(settings)
        self._namespace = str(settings.temporal_connect_config()["namespace"])
        self._codec: EncryptionCodec | None = None
        self._token: str | None = None

    @property
    def codec(self) -> EncryptionCodec:
        if self._codec is None:
            self._codec = EncryptionCodec(payload_key_ring(self._settings))
        return self._codec

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = codec_token(self._settings)
        return self._token

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        for operation in ("decode", "encode"):
            for path in (f"/codec/{operation}", f"/codec/{{token}}/{operation}"):
                router.add_api_route(path, self._handler(operation), methods=["POST"])
                router.add_api_route(path, self.preflight, methods=["OPTIONS"])
        return router

    def _cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None or origin not in self._origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def _foreign(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        return origin is not None and origin not in self._origins

    async def preflight(self, request: Request) -> Response:
        """The browser asks before it POSTs JSON with an ``X-Namespace`` header."""
        if self._foreign(request):
            return refusal_response(403, "ForeignOrigin", "this origin may not use the codec")
        headers = {
            **self._cors(request),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        }
        return Response(status_code=204, headers=headers)

    def _authorised(self, request: Request) -> bool:
        presented = request.path_params.get("token")
        if presented is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            presented = value.strip() if scheme.lower() == "bearer" else ""
        return bool(presented) and hmac.compare_digest(presented.encode(), self.token.encode())

    def _handler(self, operation: str) -> Callable[[Request], object]:
        async def handle(request: Request) -> Response:
            cors = self._cors(request)
            if self._foreign(request):
                return refusal_response(403, "ForeignOrigin", "this origin may not use the codec")
            if not self._authorised(request):
                return refusal_response(
                    401, "CodecTokenRefused", "the codec needs the operator's codec token", cors
                )
            namespace = request.headers.get("x-namespace", self._namespace)
            if namespace != self._namespace:
                return refusal_response(
                    404, "NotFound", f"no codec for namespace {namespace!r}", cors
                )
            try:
                payloads = json_format.Parse(await request.body(), Payloads())
            except (json_format.ParseError, UnicodeDecodeError) as exc:
                return refusal_response(422, "InvalidRequest", f"payloads: {exc}", cors)
            try:
                if operation == "decode":
                    result = [self.codec.decode_one(p) for p in payloads.payloads]
                else:
                    result = [self.codec.encode_one(p) for p in payloads.payloads]
            except PayloadKeyError as exc:
                return refusal_response(422, "PayloadNotOpened", str(exc), cors)
            answer = json_format.MessageToDict(Payloads(payloads=result))
            answer.setdefault("payloads", [])
            return JSONResponse(answer, headers=cors)

        handle.__name__ = f"codec_{operation}"
        return handle


def router(settings: Settings) -> APIRouter:
    """The codec routes for ``settings`` (left out of /openapi.json: operator plumbing)."""
    return CodecEndpoint(settings).router()
