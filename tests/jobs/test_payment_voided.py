"""A cheque cashed again long after its first cashing pays for no run.

The account answers a cashing at once and remembers only recent cheques; a cheque it has
forgotten is refused by its credit note's workflow id a moment later, and the hold is taken
back. A job paid that way must never run: its run is refused (``PaymentVoided``) and nothing is
charged. On the dev server with every worker role, real S3 and the real calculation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import httpx

from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.models import JobState, job_uid_for
from jobsheet.jobs.operations import submit_job, trigger_run
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.cheque import write_cheque
from jobsheet.ledger.models import account_workflow_id
from jobsheet.ledger.state import AccountState, cheque_tag
from tests.jobs.conftest import Deployment


async def _forgotten(env: Deployment, cheque_uid: str) -> bool:
    handle = env.client.get_workflow_handle(account_workflow_id(env.payer))
    state = await handle.query("state", result_type=AccountState)
    tag = cheque_tag(cheque_uid)
    return tag not in (*state.cheques, *state.cheques_before) and not state.notes_to_start


async def test_a_cheque_cashed_again_long_after_pays_for_no_run(deployed: Deployment) -> None:
    queue = deployed.settings.task_queue_ledger
    payer = await ledger.open_account(
        deployed.client, owner=deployed.user.name, task_queue=queue, continue_as_new_after=2
    )
    await ledger.deposit(deployed.client, payer, "50.00", operator=deployed.operator)
    env = dataclasses.replace(deployed, payer=payer)
    data = b"paid twice\n"
    request = env.request(data)
    cheque = write_cheque(
        env.user,
        account=payer,
        recipient=env.provider,
        resource=request.fingerprint(),
        max_spend="20.00",
    )

    async def submit() -> str:
        authorisation = sign_authorisation(env.user, request.fingerprint())
        submitted = await submit_job(
            env.client, env.settings, request=request, authorisation=authorisation, cheque=cheque
        )
        assert submitted.uid == job_uid_for(authorisation.signature)
        env.submitted.append(submitted.uid)  # shared with the deployment: recorded histories
        async with httpx.AsyncClient() as http:
            (await http.put(submitted.upload_url, content=data)).raise_for_status()
        await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
        return submitted.uid

    first = await submit()
    assert (await env.wait_for(first, JobState.SUCCEEDED, JobState.FAILED)).state is (
        JobState.SUCCEEDED
    )
    # Enough operations for the account to continue as new twice and forget the cheque.
    for n in range(6):
        await ledger.deposit(
            env.client, payer, "1.00", operator=env.operator, idempotency_key=f"top-{n}"
        )
    for _ in range(200):
        if await _forgotten(env, cheque.uid):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the account never forgot the cheque")
    before = await ledger.balance(env.client, payer)

    second = await submit()
    sheet = await env.wait_for(
        second, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED
    )
    assert sheet.state is JobState.FAILED, sheet.state
    assert "PaymentVoided" in (sheet.error or ""), sheet.error
    assert JobState.SETTLING not in [entry.state for entry in sheet.timeline]
    assert sheet.costs.charged == 0

    async def settled() -> bool:
        view = await ledger.balance(env.client, payer)
        return view.held == 0 and view.in_flight == 0

    for _ in range(200):
        if await settled():
            break
        await asyncio.sleep(0.05)
    after = await ledger.balance(env.client, payer)
    assert (after.balance, after.held) == (before.balance, Decimal("0.00"))
