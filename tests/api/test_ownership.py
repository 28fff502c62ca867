"""Each user sees and acts on their own things only; the operator sees everything.

bob holds what any user holds (a registered key and the API's URL) and tries alice's job and
account every way the API offers. Each refusal reads exactly like "no such thing".
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx

from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.identity.http_signing import sign_request
from jobsheet.identity.keys import Identity, generate_identity
from jobsheet.jobs.messages import cancel_resource
from jobsheet.jobs.models import JobState
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.cheque import write_cheque
from jobsheet.ledger.orders import sign_deposit
from tests.api.conftest import Deployment
from tests.api.signed import Signed

DATA = b"alice's private numbers\n" * 50


async def sign_up(base: str, name: str) -> Identity:
    identity = generate_identity(name)
    answer = await Signed(base, None).post(
        "/v1/users", {"name": name, "public_key": identity.public_record().public_key}
    )
    assert answer.status_code == 201, answer.text
    return identity


def submit_body(env: Deployment, signer: Identity, *, account: str, user: str) -> dict:
    request = env.request(DATA).model_copy(update={"account": account, "user": user})
    resource = request.fingerprint()
    return {
        "request": request.model_dump(mode="json"),
        "authorisation": sign_authorisation(signer, resource).model_dump(mode="json"),
        "cheque": write_cheque(
            signer,
            account=account,
            recipient=env.settings.provider_account,
            resource=resource,
            max_spend="20.00",
        ).model_dump(mode="json"),
    }


async def test_bob_cannot_touch_alices_jobs_or_money(deployed: Deployment) -> None:
    base = deployed.settings.api_url
    alice = Signed(base, deployed.user)
    bob_identity = await sign_up(base, f"bob-{uuid.uuid4().hex[:8]}")
    bob = Signed(base, bob_identity)

    # alice submits through the API and runs her job to the end.
    body = submit_body(deployed, deployed.user, account=deployed.payer, user=deployed.user.name)
    submitted = await alice.post("/v1/jobs", body)
    assert submitted.status_code == 201, submitted.text
    answer = submitted.json()
    uid = answer["uid"]
    assert Decimal(answer["held"]) > 0
    async with httpx.AsyncClient(timeout=60) as http:
        assert (await http.put(answer["upload_url"], content=DATA)).status_code == 200
        assert (await http.post(answer["run_url"])).status_code == 202
    sheet = await deployed.wait_for(uid, JobState.SUCCEEDED, JobState.FAILED)
    assert sheet.state == JobState.SUCCEEDED, sheet.error

    # The same body again (a lost answer) names the same job, which has ended: no second job.
    again = await alice.post("/v1/jobs", body)
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "JobEnded" and uid in again.json()["message"]

    no_job = {"error": "NotFound", "message": "no job of yours"}
    for path in (f"/v1/jobs/{uid}", f"/v1/jobs/{uid}/events"):
        refused = await bob.get(path)
        assert (refused.status_code, refused.json()) == (404, no_job), path
    unknown = await bob.get("/v1/jobs/job-" + "f" * 32)
    assert unknown.json() == no_job
    assert (await bob.post(f"/v1/jobs/{uid}/downloads")).json() == no_job
    cancel = {
        "authorisation": sign_authorisation(bob_identity, cancel_resource(uid)).model_dump(
            mode="json"
        )
    }
    assert (await bob.post(f"/v1/jobs/{uid}/cancel", cancel)).json() == no_job
    listed = await bob.get("/v1/jobs")
    assert listed.status_code == 200 and listed.json()["jobs"] == []
    assert (await bob.get(f"/v1/jobs?user={deployed.user.name}")).status_code == 404
    assert [job["uid"] for job in (await alice.get("/v1/jobs")).json()["jobs"]] == [uid]

    # bob re-sending alice's submission (to get her PARs) is refused without a word about it.
    stolen = await bob.post("/v1/jobs", body)
    assert stolen.status_code == 403 and "run_url" not in stolen.text

    # Her account: no balance, no statement, no paying from it, no deposits by anyone but the
    # operator.
    for path in (f"/v1/accounts/{deployed.payer}", f"/v1/accounts/{deployed.payer}/statement"):
        refused = await bob.get(path)
        assert (refused.status_code, refused.json()["error"]) == (404, "NotFound"), path
    paying = await bob.post(
        "/v1/jobs",
        submit_body(deployed, bob_identity, account=deployed.payer, user=bob_identity.name),
    )
    assert paying.status_code == 409, paying.text
    deposit = sign_deposit(
        bob_identity, account=deployed.payer, amount="100.00", idempotency_key=uuid.uuid4().hex
    )
    minted = await bob.post(
        f"/v1/accounts/{deployed.payer}/deposits", deposit.model_dump(mode="json")
    )
    assert (minted.status_code, minted.json()["error"]) == (403, "OperatorOnly")

    # alice sees her own things; the operator sees everything and alone may deposit.
    statement = (await alice.get(f"/v1/accounts/{deployed.payer}/statement")).json()
    assert uid in {line["job_uid"] for line in statement["lines"]}
    downloads = await alice.post(f"/v1/jobs/{uid}/downloads")
    assert downloads.status_code == 200 and downloads.json()["pars"]
    operator = Signed(base, deployed.operator)
    assert (await operator.get(f"/v1/jobs/{uid}")).json()["state"] == "succeeded"
    operator_deposit = sign_deposit(
        deployed.operator,
        account=deployed.payer,
        amount="5.00",
        idempotency_key=uuid.uuid4().hex,
    )
    path = f"/v1/accounts/{deployed.payer}/deposits"
    first = await operator.post(path, operator_deposit.model_dump(mode="json"))
    retry = await operator.post(path, operator_deposit.model_dump(mode="json"))
    assert first.status_code == 200, first.text
    assert first.json() == retry.json()
    view = await ledger.balance(deployed.client, deployed.payer)
    assert view.balance == deployed.initial_funds + Decimal("5.00") - sheet.costs.charged


async def test_watching_a_job_streams_its_states(deployed: Deployment) -> None:
    base = deployed.settings.api_url
    alice = Signed(base, deployed.user)
    body = submit_body(deployed, deployed.user, account=deployed.payer, user=deployed.user.name)
    answer = (await alice.post("/v1/jobs", body)).json()
    async with httpx.AsyncClient(timeout=60) as http:
        assert (await http.put(answer["upload_url"], content=DATA)).status_code == 200
        assert (await http.post(answer["run_url"])).status_code == 202

        request = http.build_request("GET", f"{base}/v1/jobs/{answer['uid']}/events")
        sign_request(request, deployed.user, b"")
        response = await http.send(request, stream=True)
        assert response.headers["content-type"].startswith("text/event-stream")
        states = []
        async with asyncio.timeout(90):
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    event = httpx.Response(200, content=line[5:]).json()
                    if event["kind"] == "state":
                        states.append(event["state"])
        await response.aclose()
    assert states == ["submitted", "awaiting_upload", "running", "settling", "succeeded"]
