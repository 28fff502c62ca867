"""A submit whose answer is lost on the way back is sent again and gets the same job's PARs:
one job, one hold, against the real API and workers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx

from jobsheet.jobs.models import JobState
from jobsheet.ledger import operations as ledger
from jobsheet.sdk import Client
from jobsheet.sdk.session import RetryPolicy
from tests.sdk.conftest import SdkEnv


class LosesFirstSubmitAnswer(httpx.AsyncBaseTransport):
    """Forwards every request to the real API, but drops the first submit's answer after the
    API has acted on it, as a dying connection or proxy would."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.submits = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/jobs":
            self.submits += 1
            if self.submits == 1:
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("connection lost before the answer arrived", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_lost_submit_answer_is_retried_into_the_same_job(
    sdk_env: SdkEnv, tmp_path: Path
) -> None:
    data = tmp_path / "input.txt"
    data.write_bytes(b"one job, however many answers get lost\n" * 100)
    transport = LosesFirstSubmitAnswer()
    async with Client(
        sdk_env.settings,
        sdk_env.deployment.user,
        retry=RetryPolicy(attempts=3, first_delay=0.1),
        transport=transport,
    ) as sdk:
        job = await sdk.submit("checksum", {}, data, account=sdk_env.account, max_spend="5.00")
        assert transport.submits == 2
        listed = await sdk.list_jobs()
        assert [summary.uid for summary in listed] == [job.uid]
        view = await ledger.balance(sdk_env.deployment.client, sdk_env.account)
        assert view.open_holds == 1 and view.held == Decimal("3.05")
        await job.upload()
        await job.run()
        sheet = await job.result()
    assert sheet.state == JobState.SUCCEEDED, sheet.error
    assert len(sheet.credit_notes) == 1
