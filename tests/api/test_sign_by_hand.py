"""The README's "Signing a request by hand" works as written against the real API."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from tests.api.conftest import Deployment

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(marker: str) -> str:
    text = README.read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readme_signing_recipe_is_accepted(deployed: Deployment) -> None:
    namespace: dict[str, object] = {}
    exec(readme_block("sign-by-hand"), namespace)
    signed_request: Callable[..., httpx.Response] = namespace["signed_request"]  # type: ignore[assignment]
    user = deployed.user
    raw = user.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    url = f"{deployed.settings.api_url}/v1/accounts/{deployed.payer}"
    answer = await asyncio.to_thread(
        signed_request,
        "GET",
        url,
        b"",
        user.name,
        user.key_id,
        base64.b64encode(raw).decode(),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["account"] == deployed.payer
