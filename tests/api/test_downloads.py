"""Download PARs are presigned from the job's final sheet once it ended (its workflow completed
with it), fresh on every call, until the outputs' retention ends."""

from __future__ import annotations

import hashlib

import httpx
from temporalio.client import WorkflowExecutionStatus

from jobsheet.jobs.models import JobState
from jobsheet.jobs.operations import job_handle
from tests.api.conftest import Deployment
from tests.api.signed import Signed
from tests.api.test_ownership import DATA, submit_body


async def test_downloads_after_the_job_ended_come_from_its_final_sheet(
    deployed: Deployment,
) -> None:
    alice = Signed(deployed.settings.api_url, deployed.user)
    body = submit_body(deployed, deployed.user, account=deployed.payer, user=deployed.user.name)
    answer = (await alice.post("/v1/jobs", body)).json()
    uid = answer["uid"]
    async with httpx.AsyncClient(timeout=60) as http:
        assert (await http.put(answer["upload_url"], content=DATA)).status_code == 200
        assert (await http.post(answer["run_url"])).status_code == 202
        sheet = await deployed.wait_for(uid, JobState.SUCCEEDED, JobState.FAILED)
        assert sheet.state == JobState.SUCCEEDED, sheet.error

        first = await alice.post(f"/v1/jobs/{uid}/downloads")
        assert first.status_code == 200, first.text
        description = await job_handle(deployed.client, uid).describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED

        closed = await alice.post(f"/v1/jobs/{uid}/downloads")
        assert closed.status_code == 200, closed.text
        pars = closed.json()["pars"]
        assert {par["key"] for par in pars} == {par["key"] for par in first.json()["pars"]}
        for par in pars:
            got = await http.get(par["url"])
            assert got.status_code == 200
            assert hashlib.sha256(got.content).hexdigest() == par["sha256"]
        operator = Signed(deployed.settings.api_url, deployed.operator)
        assert (await operator.post(f"/v1/jobs/{uid}/downloads")).status_code == 200
