"""Every ``/v1`` route checks who calls: unsigned, altered, stale, unknown-key and revoked-key
requests get 401 naming the reason, and never say whether the thing asked for exists."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx
import pytest

from jobsheet.api.app import PAR_PREFIX, PUBLIC_ROUTES
from jobsheet.identity.key_orders import sign_add_key, sign_revoke_key
from jobsheet.identity.keys import Identity, generate_identity
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


def add_order(signer: Identity, key: Identity, *, retire_others: bool) -> dict[str, Any]:
    order = sign_add_key(
        signer,
        key.public_record(valid_from=dt.datetime.now(dt.UTC)),
        idempotency_key=uuid.uuid4().hex,
        retire_others=retire_others,
    )
    return order.model_dump(mode="json")


def revoke_order(signer: Identity, user: str, key_id: str) -> dict[str, Any]:
    order = sign_revoke_key(signer, user=user, key_id=key_id, idempotency_key=uuid.uuid4().hex)
    return order.model_dump(mode="json")


async def test_a_revoked_or_rotated_key_signs_nothing_new(deployed: Deployment) -> None:
    base = deployed.settings.api_url
    alice = Signed(base, deployed.user)
    name = deployed.user.name
    second = generate_identity(name)
    keys = f"/v1/users/{name}/keys"
    added = await alice.post(keys, add_order(deployed.user, second, retire_others=False))
    assert added.status_code == 200, added.text
    revoke = f"{keys}/{deployed.user.key_id}/revoke"
    revoked = await Signed(base, second).post(
        revoke, revoke_order(second, name, deployed.user.key_id)
    )
    assert revoked.status_code == 200, revoked.text
    answer = await alice.get(f"/v1/users/{name}")
    assert answer.status_code == 401 and answer.json()["error"] == "KeyRevoked"
    assert (await Signed(base, second).get(f"/v1/users/{name}")).status_code == 200

    third = generate_identity(name)
    rotated = await Signed(base, second).post(keys, add_order(second, third, retire_others=True))
    assert rotated.status_code == 200, rotated.text
    assert (await Signed(base, second).get(f"/v1/users/{name}")).json()["error"] == "KeyRevoked"
    assert (await Signed(base, third).get(f"/v1/users/{name}")).status_code == 200


async def test_key_changes_are_orders_signed_by_the_user_or_the_operator(
    deployed: Deployment,
) -> None:
    """The API checks who calls; the user's registry checks the order itself."""
    base = deployed.settings.api_url
    user, operator = deployed.user, deployed.operator
    name = user.name
    alice = Signed(base, user)
    keys = f"/v1/users/{name}/keys"
    stranger = generate_identity(name)

    old_body = {"public_key": stranger.public_record().public_key, "retire_others": False}
    unsigned = await alice.post(keys, old_body)
    assert (unsigned.status_code, unsigned.json()["error"]) == (422, "InvalidRequest")
    # A well-formed order signed by a key the user does not have: the registry refuses it.
    forged = await alice.post(
        keys, add_order(stranger, generate_identity(name), retire_others=False)
    )
    assert (forged.status_code, forged.json()["error"]) == (409, "BadSignature"), forged.text
    elsewhere = await alice.post(keys, add_order(operator, stranger, retire_others=False))
    assert elsewhere.status_code == 422, elsewhere.text

    # A user's order may not revoke another's key; the operator's revokes a stolen key.
    revoke = f"{keys}/{user.key_id}/revoke"
    theirs = await Signed(base, operator).post(revoke, revoke_order(user, name, user.key_id))
    assert (theirs.status_code, theirs.json()["error"]) == (403, "NotYourRequest")
    wrong_key = await alice.post(revoke, revoke_order(user, name, operator.key_id))
    assert wrong_key.status_code == 422, wrong_key.text
    stolen = await Signed(base, operator).post(revoke, revoke_order(operator, name, user.key_id))
    assert stolen.status_code == 200, stolen.text
    assert stolen.json()["revoked_at"] is not None
    assert (await alice.get(f"/v1/users/{name}")).json()["error"] == "KeyRevoked"


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
