"""A real job end to end on the dev server: real activities, real S3, a real calculation."""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal

import httpx

from jobsheet.core.money import round_cost
from jobsheet.core.objectstore import internal_client
from jobsheet.jobs.models import JobSheet, JobState, ParKind
from jobsheet.jobs.operations import job_handle, trigger_run
from jobsheet.jobs.store import read_sheet
from tests.jobs.conftest import Deployment


async def test_upload_trigger_run_settle_and_download(deployed: Deployment) -> None:
    data = b"the quick brown fox\njumps over the lazy dog\n" * 100
    before = await deployed.balances()
    submitted = await deployed.submit(deployed.request(data))
    assert submitted.state == JobState.AWAITING_UPLOAD
    assert submitted.run_url.startswith(deployed.settings.api_url + "/par/run/")

    http = httpx.AsyncClient()
    assert (await http.put(submitted.upload_url, content=data)).status_code == 200
    token = submitted.run_url.rsplit("/", 1)[1]
    triggered = await trigger_run(deployed.client, submitted.uid, token)
    assert triggered.started

    sheet = await deployed.wait_for(submitted.uid, JobState.SUCCEEDED, JobState.FAILED)
    assert sheet.state == JobState.SUCCEEDED, sheet.error
    assert [entry.state for entry in sheet.timeline] == [
        JobState.SUBMITTED,
        JobState.AWAITING_UPLOAD,
        JobState.RUNNING,
        JobState.SETTLING,
        JobState.SUCCEEDED,
    ]

    # Outputs: listed in the manifest and downloadable through download PARs.
    pars = await deployed.downloads(submitted.uid)
    by_key = {par.key.rsplit("/", 1)[1]: par for par in pars.pars}
    assert {"sha256.txt", "wc.txt", "stdout.txt", "stderr.txt"} <= set(by_key)
    for par in pars.pars:
        body = (await http.get(par.url)).content
        assert hashlib.sha256(body).hexdigest() == par.sha256
        assert len(body) == par.size
    checksum = (await http.get(by_key["sha256.txt"].url)).text.strip()
    await http.aclose()
    assert checksum == hashlib.sha256(data).hexdigest()

    # Money: the payer paid exactly the cost, the provider got it, the rest came back.
    assert sheet.contract is not None
    costs = sheet.costs
    assert costs.held == sheet.contract.quote
    assert costs.charged + costs.refunded == costs.held
    assert costs.charged > 0
    assert costs.charged == charge_for_run(sheet)
    after = await deployed.balances()
    assert after[0] == before[0] - costs.charged
    assert after[1] == 0
    assert after[2] == before[2] + costs.charged

    # The sheet holds metadata of every PAR but no URL or token.
    kinds = {par.kind for par in sheet.pars}
    assert {
        ParKind.UPLOAD,
        ParKind.BUCKET_WRITE,
        ParKind.RUN,
        ParKind.READ_INPUT,
        ParKind.DOWNLOAD,
    } <= kinds
    text = sheet.model_dump_json()
    assert token not in text and "X-Amz-Signature" not in text

    # Findable in the Web UI: the search attributes name its state, account, user, calculation.
    query = (
        f'JobState="succeeded" AND JobAccount="{deployed.payer}" '
        f'AND JobUser="{deployed.user.name}" AND JobCalculation="checksum"'
    )
    found: list[str] = []
    for _ in range(50):
        found = [wf.id async for wf in deployed.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [sheet.uid]
    description = await job_handle(deployed.client, sheet.uid).describe()
    summary = await description.static_summary()
    assert summary is not None and "checksum" in summary and sheet.uid in summary

    persisted = read_sheet(internal_client(deployed.settings), deployed.settings.bucket, sheet.uid)
    assert persisted.state == JobState.SUCCEEDED
    assert persisted.costs == sheet.costs


def charge_for_run(sheet: JobSheet) -> Decimal:
    """What docs/billing.md says a run costs: fee + price x wall seconds, up to the cent."""
    assert sheet.contract is not None and sheet.usage is not None
    contract = sheet.contract
    seconds = min(Decimal(str(sheet.usage.wall_seconds)), Decimal(contract.max_runtime_seconds))
    return min(round_cost(contract.fee + contract.price_per_second * seconds), contract.quote)
