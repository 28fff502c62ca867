"""Every ``/v1`` route checks who calls: unsigned, altered, stale, unknown-key and revoked-key
requests get 401 naming the reason, and never say whether the thing asked for exists."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx
import pytest

from jobsheet.api.app import PAR_PREFIX, PUBLIC_ROUTES
from jobsheet.identity import generate_identity
from tests.api.conftest import Deployment
from tests.api.signed import Signed

SAMPLE = {
    "name": "someone",
    "account": "acct-000000000000",
    "uid": "job-" + "0" * 32,
    "key_id": "ed25519:" + "0" * 32,
}


def openapi_operations(spec: dict) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "x"), path)


async def test_every_route_but_the_public_and_par_ones_refuses_an_unsigned_request(
    deployed: Deployment,
) -> None:
    """Walks the OpenAPI document, so a route added later cannot forget its signature."""
    base = deployed.settings.api_url
    async with httpx.AsyncClient(timeout=30) as http:
        spec = (await http.get(f"{base}/openapi.json")).json()
        operations = openapi_operations(spec)
        assert len(operations) >= 15
        documented_public = {op for op in operations if op in PUBLIC_ROUTES}
        assert documented_public == set(PUBLIC_ROUTES)
        for method, path in operations:
            if (method, path) in PUBLIC_ROUTES or path.startswith(PAR_PREFIX):
                continue
            answer = await http.request(method, base + concrete(path), json={})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"] == "SignatureMissing", (method, path)
        assert (await http.get(f"{base}/docs")).status_code == 200


async def test_refusals_name_the_reason(deployed: Deployment) -> None:
    base = deployed.settings.api_url
    alice = Signed(base, deployed.user)
    path = f"/v1/accounts/{deployed.payer}"
    first = await alice.get(path)
    assert first.status_code == 200, first.text

    def reason(answer: httpx.Response) -> str:
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Signature")
        return str(answer.json()["error"])

    assert reason(await Signed(base, None).get(path)) == "SignatureMissing"
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    assert reason(await alice.get(path, created=stale)) == "SignatureStale"
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    assert reason(await alice.get(path, created=future)) == "SignatureStale"
    assert reason(await Signed(base, generate_identity("mallory-x")).get(path)) == "UnknownKey"
    stranger = generate_identity(deployed.user.name)  # right name, unregistered key
    assert reason(await Signed(base, stranger).get(path)) == "UnknownKey"

    def other_path(request: httpx.Request) -> httpx.Request:
        return httpx.Request(
            request.method,
            str(request.url).replace(deployed.payer, "acct-ffffffffffff"),
            headers=request.headers,
        )

    assert reason(await alice.get(path, tamper=other_path)) == "SignatureInvalid"

    def other_body(request: httpx.Request) -> httpx.Request:
        return httpx.Request(
            request.method, request.url, headers=request.headers, content=b"[]"
        )  # as long as the signed ``{}``

    opened = await alice.post(
        "/v1/accounts", {}, headers={"Idempotency-Key": uuid.uuid4().hex}, tamper=other_body
    )
    assert reason(opened) == "BodyChanged"

    def other_key(request: httpx.Request) -> httpx.Request:
        request.headers["Idempotency-Key"] = uuid.uuid4().hex
        return request

    replayed = await alice.post(
        "/v1/accounts", {}, headers={"Idempotency-Key": uuid.uuid4().hex}, tamper=other_key
    )
    assert reason(replayed) == "SignatureInvalid"

    # A 401 reads the same whether or not the thing exists.
    unknown = await Signed(base, None).get("/v1/accounts/acct-ffffffffffff")
    known = await Signed(base, None).get(path)
    assert unknown.json() == known.json()


async def test_a_revoked_or_rotated_key_signs_nothing_new(deployed: Deployment) -> None:
    base = deployed.settings.api_url
    alice = Signed(base, deployed.user)
    name = deployed.user.name
    second = generate_identity(name)
    added = await alice.post(
        f"/v1/users/{name}/keys",
        {"public_key": second.public_record().public_key, "retire_others": False},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert added.status_code == 200, added.text
    revoked = await Signed(base, second).call(
        "DELETE", f"/v1/users/{name}/keys/{deployed.user.key_id}"
    )
    assert revoked.status_code == 200, revoked.text
    answer = await alice.get(f"/v1/users/{name}")
    assert answer.status_code == 401 and answer.json()["error"] == "KeyRevoked"
    assert (await Signed(base, second).get(f"/v1/users/{name}")).status_code == 200

    third = generate_identity(name)
    rotated = await Signed(base, second).post(
        f"/v1/users/{name}/keys",
        {"public_key": third.public_record().public_key},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert rotated.status_code == 200, rotated.text
    assert (await Signed(base, second).get(f"/v1/users/{name}")).json()["error"] == "KeyRevoked"
    assert (await Signed(base, third).get(f"/v1/users/{name}")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "../../escape", "public_key": "x"}, "name"),
        ({"name": "Alice", "public_key": "x"}, "name"),
        ({"name": "bob-ok", "public_key": "AAAA"}, "public_key"),
        ({"name": "bob-ok"}, "public_key"),
    ],
)
async def test_bad_sign_ups_are_refused_naming_the_field(
    gateway: object, body: dict[str, str], field: str
) -> None:
    base = gateway.settings.api_url  # type: ignore[attr-defined]
    answer = await Signed(base, None).post("/v1/users", body)
    assert answer.status_code == 422
    assert answer.json()["error"] == "InvalidRequest"
    assert answer.json()["message"].startswith(field), answer.json()


async def test_a_body_over_the_limit_is_refused_with_413(gateway: object) -> None:
    base = gateway.settings.api_url  # type: ignore[attr-defined]
    answer = await Signed(base, None).post("/v1/users", {"name": "x" * 400_000})
    assert answer.status_code == 413
    assert answer.json()["error"] == "TooLarge"
