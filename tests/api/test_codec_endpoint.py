"""The codec endpoint: the Web UI's requests open payloads for the operator, and nobody else's.

The requests are the ones the Temporal Web UI sends (temporalio/ui, data-encoder.ts): a CORS
preflight, then ``POST <endpoint>/decode`` with ``Content-Type: application/json``, an
``X-Namespace`` header and ``{"payloads": [...]}`` in protobuf's JSON form, from the UI's origin.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from jobsheet.core.payload_codec import ENCODING, KEY_ID_METADATA
from jobsheet.core.temporal import codec_token, data_converter, payload_key_ring
from jobsheet.telemetry.redaction import redact_secrets
from tests.api_server import ApiServer

SECRET = "http://s3/in?X-Amz-Signature=0123"


def ui_origin(gateway: ApiServer) -> str:
    return f"http://127.0.0.1:{gateway.settings.temporal_ui_port}"


def namespace(gateway: ApiServer) -> str:
    return str(gateway.settings.temporal_connect_config()["namespace"])


def as_json(payloads: list[Payload]) -> dict[str, Any]:
    """The body the Web UI sends: Payloads in protobuf's JSON form (bytes as base64)."""
    return json_format.MessageToDict(Payloads(payloads=payloads))


def from_json(body: dict[str, Any]) -> list[Payload]:
    return list(json_format.ParseDict(body, Payloads()).payloads)


def ui_headers(gateway: ApiServer) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Namespace": namespace(gateway),
        "Origin": ui_origin(gateway),
    }


async def sealed(gateway: ApiServer, value: object) -> tuple[Payload, Payload]:
    """(the payload in clear, as the product's converter seals it with the API's keys)."""
    [clear] = await data_converter(None).encode([value])
    [secret] = await data_converter(payload_key_ring(gateway.settings)).encode([value])
    assert secret.metadata["encoding"] == ENCODING
    return clear, secret


async def test_the_web_uis_decode_request_opens_payloads(gateway: ApiServer) -> None:
    clear, secret = await sealed(gateway, {"upload_url": SECRET})
    endpoint = f"{gateway.settings.api_url}/codec/{codec_token(gateway.settings)}"
    async with httpx.AsyncClient() as http:
        preflight = await http.options(
            f"{endpoint}/decode",
            headers={
                "Origin": ui_origin(gateway),
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ui_origin(gateway)
        assert "POST" in preflight.headers["access-control-allow-methods"]
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "content-type" in allowed and "x-namespace" in allowed

        plain = clear  # a payload recorded before encryption is answered as it is
        answer = await http.post(
            f"{endpoint}/decode", json=as_json([secret, plain]), headers=ui_headers(gateway)
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == ui_origin(gateway)
        assert from_json(answer.json()) == [clear, plain]
        assert SECRET.encode() in from_json(answer.json())[0].data

        # Encode (the UI's "start workflow" or "signal" with input) seals with the current key.
        encoded = await http.post(
            f"{endpoint}/encode", json=as_json([clear]), headers=ui_headers(gateway)
        )
        assert encoded.status_code == 200, encoded.text
        [back] = from_json(encoded.json())
        key = payload_key_ring(gateway.settings).current.key_id
        assert back.metadata[KEY_ID_METADATA] == key.encode()
        again = await http.post(
            f"{endpoint}/decode", json=as_json([back]), headers=ui_headers(gateway)
        )
        assert from_json(again.json()) == [clear]

        empty = await http.post(f"{endpoint}/decode", json={}, headers=ui_headers(gateway))
        assert empty.status_code == 200 and empty.json() == {"payloads": []}


async def test_the_cli_form_takes_the_token_as_a_bearer(gateway: ApiServer) -> None:
    """``temporal workflow show --codec-endpoint <api>/codec --codec-auth "Bearer <token>"``."""
    clear, secret = await sealed(gateway, ["a", 1])
    token = codec_token(gateway.settings)
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{gateway.settings.api_url}/codec/decode",
            json=as_json([secret]),
            headers={"Authorization": f"Bearer {token}", "X-Namespace": namespace(gateway)},
        )
    assert answer.status_code == 200, answer.text
    assert from_json(answer.json()) == [clear]


@pytest.mark.parametrize("operation", ["decode", "encode"])
async def test_without_the_operators_token_nothing_opens(
    gateway: ApiServer, operation: str
) -> None:
    _, secret = await sealed(gateway, {"upload_url": SECRET})
    base = gateway.settings.api_url
    token = codec_token(gateway.settings)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    body = as_json([secret])
    async with httpx.AsyncClient() as http:
        for url, headers in [
            (f"{base}/codec/{operation}", {}),
            (f"{base}/codec/{operation}", {"Authorization": f"Bearer {wrong}"}),
            (f"{base}/codec/{operation}", {"Authorization": token}),  # not a bearer
            (f"{base}/codec/{wrong}/{operation}", {}),
            (f"{base}/codec/{operation}/{operation}", {}),
        ]:
            answer = await http.post(url, json=body, headers={**ui_headers(gateway), **headers})
            assert answer.status_code == 401, (url, answer.text)
            assert answer.json()["error"] == "CodecTokenRefused"
            assert SECRET not in answer.text and "X-Amz" not in answer.text


async def test_another_origin_or_namespace_is_refused(gateway: ApiServer) -> None:
    _, secret = await sealed(gateway, "x")
    endpoint = f"{gateway.settings.api_url}/codec/{codec_token(gateway.settings)}"
    evil = {**ui_headers(gateway), "Origin": "http://evil.example"}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{endpoint}/decode", json=as_json([secret]), headers=evil)
        assert answer.status_code == 403 and answer.json()["error"] == "ForeignOrigin"
        assert "access-control-allow-origin" not in answer.headers
        preflight = await http.options(
            f"{endpoint}/decode",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers

        other = {**ui_headers(gateway), "X-Namespace": "someone-else"}
        answer = await http.post(f"{endpoint}/decode", json=as_json([secret]), headers=other)
        assert answer.status_code == 404

        garbled = await http.post(
            f"{endpoint}/decode", content=b"{not json", headers=ui_headers(gateway)
        )
        assert garbled.status_code == 422 and garbled.json()["error"] == "InvalidRequest"


async def test_a_payload_no_key_opens_is_refused_by_name(gateway: ApiServer) -> None:
    endpoint = f"{gateway.settings.api_url}/codec/{codec_token(gateway.settings)}"
    stranger = Payload(
        metadata={"encoding": ENCODING, KEY_ID_METADATA: b"key-19990101-00000000"},
        data=b"\x00" * 40,
    )
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{endpoint}/decode", json=as_json([stranger]), headers=ui_headers(gateway)
        )
    assert answer.status_code == 422
    assert answer.json()["error"] == "PayloadNotOpened"


async def test_the_codec_is_not_in_the_public_document_and_its_token_not_in_logs(
    gateway: ApiServer,
) -> None:
    async with httpx.AsyncClient() as http:
        spec = (await http.get(f"{gateway.settings.api_url}/openapi.json")).json()
    assert not [path for path in spec["paths"] if path.startswith("/codec")]
    token = codec_token(gateway.settings)
    line = f'"POST /codec/{token}/decode HTTP/1.1" 200'
    assert redact_secrets(line) == '"POST /codec/[token]/decode HTTP/1.1" 200'
    assert redact_secrets("POST /codec/decode HTTP/1.1") == "POST /codec/decode HTTP/1.1"
