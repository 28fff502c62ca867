"""Each shipped calculation runs for real through the activity, outputs under the job's prefix."""

from __future__ import annotations

import hashlib
import json

from jobsheet.compute.models import RunResult, RunStatus
from tests.compute.conftest import ComputeHarness, output_prefix

TEXT = b"the cat sat on the mat\nthe dog sat\n\nno cats here\n"


def assert_manifest_matches_store(
    harness: ComputeHarness, result: RunResult, prefix: str
) -> dict[str, bytes]:
    stored = harness.objects(prefix)
    assert sorted(stored) == sorted(o.key for o in result.outputs)
    for entry in result.outputs:
        assert entry.key.startswith(prefix)
        assert entry.size == len(stored[entry.key])
        assert entry.sha256 == hashlib.sha256(stored[entry.key]).hexdigest()
    return stored


async def test_checksum(shipped_compute: ComputeHarness) -> None:
    contract = await shipped_compute.contract("checksum", service="standard")
    result = await shipped_compute.run(shipped_compute.run_request(contract, TEXT))
    assert result.status == RunStatus.SUCCEEDED, result.stderr_tail
    prefix = output_prefix(contract)
    stored = assert_manifest_matches_store(shipped_compute, result, prefix)
    assert stored[prefix + "files/sha256.txt"].decode().strip() == hashlib.sha256(TEXT).hexdigest()
    assert stored[prefix + "files/wc.txt"].split() == [b"4", b"12", str(len(TEXT)).encode()]
    assert result.exit_code == 0
    assert result.usage.wall_seconds > 0


async def test_monte_carlo_pi_reports_progress_and_estimate(
    shipped_compute: ComputeHarness,
) -> None:
    contract = await shipped_compute.contract(
        "monte-carlo-pi", {"seed": 7, "samples": 200_000}, service="science"
    )
    assert contract.parameters == {"seed": 7, "samples": 200_000}
    result = await shipped_compute.run(shipped_compute.run_request(contract))
    assert result.status == RunStatus.SUCCEEDED, result.stderr_tail
    prefix = output_prefix(contract)
    stored = assert_manifest_matches_store(shipped_compute, result, prefix)
    estimate = json.loads(stored[prefix + "files/pi.json"])
    assert estimate["samples"] == 200_000 and estimate["seed"] == 7
    assert 3.1 < estimate["pi"] < 3.2
    assert b"PROGRESS 1.000" in stored[prefix + "stdout.txt"]


async def test_text_stats_writes_several_files(shipped_compute: ComputeHarness) -> None:
    contract = await shipped_compute.contract("text-stats", {"top": 2}, service="standard")
    result = await shipped_compute.run(shipped_compute.run_request(contract, TEXT))
    assert result.status == RunStatus.SUCCEEDED, result.stderr_tail
    prefix = output_prefix(contract)
    stored = assert_manifest_matches_store(shipped_compute, result, prefix)
    files = sorted(k.removeprefix(prefix) for k in stored)
    assert files == [
        "files/lines.csv",
        "files/summary.json",
        "files/words.csv",
        "stderr.txt",
        "stdout.txt",
    ]
    words = stored[prefix + "files/words.csv"].decode().splitlines()
    assert words == ["word,count", "the,3", "sat,2"]
    summary = json.loads(stored[prefix + "files/summary.json"])
    assert summary["lines"] == 4 and summary["words"] == 12
