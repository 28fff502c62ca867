"""Cancellation by the owner (update) or of the workflow, in each state, conserves money."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities import contract_book
from jobsheet.compute.models import ContractState
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.identity.keys import generate_identity
from jobsheet.jobs.messages import cancel_resource
from jobsheet.jobs.models import JobSheet, JobState, input_key
from jobsheet.jobs.operations import cancel_job, job_handle, trigger_run
from tests.jobs.conftest import Deployment
from tests.markers import marker_dir_fixture  # noqa: F401 (the marker_dir fixture)


async def _contract_state(env: Deployment, sheet: JobSheet) -> ContractState | None:
    assert sheet.contract is not None
    record = await contract_book.contract_record(
        env.client, sheet.contract.contract_id, task_queue=sheet.contract.task_queue
    )
    return record.state if record else None


def _input_exists(env: Deployment, uid: str) -> bool:
    from jobsheet.core.objectstore import internal_client

    s3 = internal_client(env.settings)
    return any(s3.list_objects(env.settings.bucket, prefix=input_key(uid)))


async def _check_undone(env: Deployment, uid: str, before: tuple) -> JobSheet:
    sheet = await env.wait_for(uid, JobState.CANCELLED)
    assert [e.state for e in sheet.timeline].count(JobState.CANCELLED) == 1
    assert not _input_exists(env, uid)
    assert await _contract_state(env, sheet) == ContractState.RELEASED
    assert all(par.closed_at is not None for par in sheet.pars)
    return sheet


async def test_cancel_while_awaiting_upload_by_update_and_by_workflow_cancel(
    test_calcs: Deployment,
) -> None:
    env = test_calcs
    before = await env.balances()
    data = b"some input"
    by_update = await env.submit(env.request(data, "echo", service="test"))
    async with httpx.AsyncClient() as http:
        await http.put(by_update.upload_url, content=data)

    # Only the owner may cancel: another user's authorisation is refused.
    stranger = generate_identity("mallory")
    with pytest.raises(WorkflowUpdateFailedError):
        await cancel_job(
            env.client, by_update.uid, sign_authorisation(stranger, cancel_resource(by_update.uid))
        )
    sheet = await cancel_job(
        env.client, by_update.uid, sign_authorisation(env.user, cancel_resource(by_update.uid))
    )
    assert sheet.state == JobState.CANCELLED
    assert sheet.costs.charged == 0 and sheet.costs.refunded == sheet.costs.held

    by_cancel = await env.submit(env.request(data, "echo", service="test"))
    await job_handle(env.client, by_cancel.uid).cancel()

    await _check_undone(env, by_update.uid, before)
    await _check_undone(env, by_cancel.uid, before)
    assert await env.balances() == before

    # An ended job's workflow has completed: cancelling it changes nothing.
    with pytest.raises(RPCError) as caught:
        await cancel_job(
            env.client, by_update.uid, sign_authorisation(env.user, cancel_resource(by_update.uid))
        )
    assert caught.value.status == RPCStatusCode.NOT_FOUND
    assert await env.balances() == before


async def test_cancel_while_running_pays_for_the_time_used(
    test_calcs: Deployment, marker_dir
) -> None:
    env = test_calcs
    before = await env.balances()
    data = b"run me"
    uids = []
    for n in range(2):
        submitted = await env.submit(
            env.request(data, "long", service="test", marker=str(marker_dir / f"m{n}"))
        )
        async with httpx.AsyncClient() as http:
            await http.put(submitted.upload_url, content=data)
        await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
        await env.wait_for(submitted.uid, JobState.RUNNING)
        uids.append(submitted.uid)
    await asyncio.sleep(1.5)
    first = await cancel_job(
        env.client, uids[0], sign_authorisation(env.user, cancel_resource(uids[0]))
    )
    await job_handle(env.client, uids[1]).cancel()
    second = await env.wait_for(uids[1], JobState.CANCELLED)

    total = Decimal("0.00")
    for sheet in (first, second):
        assert sheet.state == JobState.CANCELLED
        assert sheet.usage is not None and sheet.usage.wall_seconds > 0
        assert sheet.contract is not None
        assert sheet.contract.fee <= sheet.costs.charged < sheet.contract.quote
        assert sheet.costs.charged + sheet.costs.refunded == sheet.costs.held
        assert sheet.outputs == []
        total += sheet.costs.charged
    after = await env.balances()
    assert after[0] == before[0] - total
    assert after[1] == 0
    assert after[2] == before[2] + total
