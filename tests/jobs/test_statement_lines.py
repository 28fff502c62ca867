"""Statement lines name their job: the payer's hold and receipt and the provider's credit."""

from __future__ import annotations

import httpx

from jobsheet.jobs.models import JobState
from jobsheet.jobs.operations import trigger_run
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import EntryKind
from tests.jobs.conftest import Deployment
from tests.ledger.test_account_workflow import wait_for


async def test_a_paid_jobs_statement_lines_carry_its_uid(deployed: Deployment) -> None:
    data = b"statement lines\n" * 64
    submitted = await deployed.submit(deployed.request(data))
    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data)).status_code == 200
    token = submitted.run_url.rsplit("/", 1)[1]
    assert (await trigger_run(deployed.client, submitted.uid, token)).started
    sheet = await deployed.wait_for(submitted.uid, JobState.SUCCEEDED, JobState.FAILED)
    assert sheet.state == JobState.SUCCEEDED, sheet.error
    uid = submitted.uid

    async def credited() -> bool:
        entries = (await ledger.statement(deployed.client, deployed.provider)).entries
        return any(entry.kind == EntryKind.CREDIT for entry in entries)

    await wait_for(credited)
    paid = (await ledger.statement(deployed.client, deployed.payer)).entries
    by_kind = {entry.kind: entry for entry in paid}
    assert by_kind[EntryKind.DEPOSIT].job_uid == ""
    assert by_kind[EntryKind.HOLD].job_uid == uid
    assert by_kind[EntryKind.RECEIPT].job_uid == uid
    assert all(entry.job_uid == uid for entry in paid if entry.kind != EntryKind.DEPOSIT)
    (credit,) = [
        entry
        for entry in (await ledger.statement(deployed.client, deployed.provider)).entries
        if entry.kind == EntryKind.CREDIT
    ]
    assert (credit.job_uid, credit.amount) == (uid, sheet.costs.charged)
    assert sheet.credit_notes[0].job_uid == uid
