"""A failing calculation and a timed-out one end in their states with the documented charges."""

from __future__ import annotations

from decimal import Decimal

import httpx

from jobsheet.core.money import round_cost
from jobsheet.jobs.models import JobState
from jobsheet.jobs.operations import trigger_run
from tests.jobs.conftest import Deployment
from tests.markers import marker_dir_fixture  # noqa: F401 (the marker_dir fixture)


async def _run(env: Deployment, calculation: str, **params: object) -> str:
    data = b"input\n"
    submitted = await env.submit(env.request(data, calculation, service="test", **params))
    async with httpx.AsyncClient() as http:
        assert (await http.put(submitted.upload_url, content=data)).status_code == 200
    await trigger_run(env.client, submitted.uid, submitted.run_url.rsplit("/", 1)[1])
    return submitted.uid


async def test_failed_and_timed_out_runs_pay_for_time_used(
    test_calcs: Deployment, marker_dir
) -> None:
    env = test_calcs
    before = await env.balances()
    failed_uid = await _run(env, "fail")
    slow_uid = await _run(env, "sleepy", marker=str(marker_dir / "marker"))

    failed = await env.wait_for(failed_uid, *[s for s in JobState if s.terminal])
    assert failed.state == JobState.FAILED
    assert failed.exit_status == 3
    assert "something broke" in failed.stderr_tail
    assert failed.error and "failed" in failed.error

    timed_out = await env.wait_for(slow_uid, *[s for s in JobState if s.terminal])
    assert timed_out.state == JobState.TIMED_OUT

    for sheet in (failed, timed_out):
        assert sheet.contract is not None and sheet.usage is not None
        contract = sheet.contract
        seconds = min(Decimal(str(sheet.usage.wall_seconds)), Decimal(contract.max_runtime_seconds))
        expected = min(
            round_cost(contract.fee + contract.price_per_second * seconds), contract.quote
        )
        assert sheet.costs.charged == expected
        assert sheet.costs.charged >= contract.fee
        assert sheet.costs.charged + sheet.costs.refunded == sheet.costs.held
    # The timed-out run used its whole max runtime: it pays the quote.
    assert timed_out.costs.charged == timed_out.contract.quote  # type: ignore[union-attr]

    after = await env.balances()
    total = failed.costs.charged + timed_out.costs.charged
    assert after[0] == before[0] - total
    assert after[1] == 0
    assert after[2] == before[2] + total
