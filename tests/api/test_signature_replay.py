"""The replay of a refused submission gets nowhere: same job, or refused, never a second job.

The attack: alice's submission is refused before it is paid (here: its authorisation is dated in
the future); the same authorisation is then sent again, in another base64 spelling of the same
signature (a new job uid once, when the uid was derived from the signature's text), or later,
once its date has come. Now every other spelling is refused at the door (422), the same spelling
names the same, rejected, job (its workflow id, never reused), and a submission that bypasses
the API under a job id of its own is refused: a job's uid must be its authorisation's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy

from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.messages import SubmitInput
from jobsheet.jobs.models import JobState, job_uid_for
from jobsheet.jobs.operations import job_start, start_options
from jobsheet.ledger.cheque import write_cheque
from tests.api.conftest import Deployment
from tests.api.signed import Signed
from tests.identity.test_canonical_signatures import other_spellings
from workflows.job_sheet import JobSheetWorkflow

DATA = b"alice's numbers\n" * 10


async def test_a_refused_submission_cannot_be_replayed(deployed: Deployment) -> None:
    env = deployed
    before = await env.balances()
    alice = Signed(env.settings.api_url, env.user)
    request = env.request(DATA)
    resource = request.fingerprint()
    future = sign_authorisation(env.user, resource, now=datetime.now(UTC) + timedelta(minutes=10))
    cheque = write_cheque(
        env.user, account=env.payer, recipient=env.provider, resource=resource, max_spend="20.00"
    )
    body = {
        "request": request.model_dump(mode="json"),
        "authorisation": future.model_dump(mode="json"),
        "cheque": cheque.model_dump(mode="json"),
    }
    first = await alice.post("/v1/jobs", body)
    assert first.status_code == 409, first.text
    assert first.json()["error"] == "AuthorisationNotYetValid"
    uid = job_uid_for(future.signature)
    rejected = await env.wait_for(uid, JobState.REJECTED)
    assert rejected.costs.held == 0

    # Every other spelling of the signature is refused before anything starts.
    for spelling in other_spellings(future.signature):
        replay = {**body, "authorisation": {**body["authorisation"], "signature": spelling}}
        answer = await alice.post("/v1/jobs", replay)
        assert answer.status_code == 422, (spelling, answer.text)

    # The same spelling names the same job, which has ended.
    again = await alice.post("/v1/jobs", body)
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "JobEnded" and uid in again.json()["message"]

    # Bypassing the API, under a job id of its own: refused, the uid is not the authorisation's.
    other = f"job-replay-{uuid.uuid4().hex}"
    start = job_start(request=request, authorisation=future, cheque=cheque).model_copy(
        update={"uid": other}
    )
    options = {**start_options(env.settings, start), "id": other}
    operation = WithStartWorkflowOperation(  # type: ignore[call-overload]
        JobSheetWorkflow.run,
        start,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        **options,
    )
    try:
        await env.client.execute_update_with_start_workflow(
            JobSheetWorkflow.submit, SubmitInput(), start_workflow_operation=operation
        )
    except WorkflowUpdateFailedError as exc:
        assert "WrongJobUid" in str(exc.cause)
    else:
        raise AssertionError("a replayed authorisation started a job")
    replayed = await env.wait_for(other, JobState.REJECTED)
    assert replayed.error and "WrongJobUid" in replayed.error
    assert replayed.costs.held == 0

    # alice's cheque was never cashed: nothing held, nothing paid.
    assert await env.balances() == before
