"""Outcomes a user can tell apart, limits, and process-tree cleanup, through the real activity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

from jobsheet.compute.contracts import ContractRefused
from jobsheet.compute.models import RUN_ACTIVITY, RunProgress, RunStatus
from tests.compute.conftest import ComputeHarness, output_prefix
from tests.markers import marker_dir_fixture  # noqa: F401 (the marker_dir fixture)
from tests.process_groups import group_members


def marker_pgid(marker: Path) -> int | None:
    try:
        text = marker.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def read_marker(marker: Path) -> int:
    """The process group id the program wrote, once it has written it."""
    for _ in range(600):
        pgid = marker_pgid(marker)
        if pgid is not None:
            return pgid
        await asyncio.sleep(0.05)
    raise AssertionError(f"the program never wrote {marker}")


async def wait_until_group_gone(pgid: int) -> list[int]:
    """Members still alive after the kill has had time to land (SIGKILL is asynchronous)."""
    for _ in range(100):
        members = group_members(pgid)
        if not members:
            return []
        await asyncio.sleep(0.05)
    return group_members(pgid)


async def test_failed_run_reports_exit_status_and_stderr_tail(compute: ComputeHarness) -> None:
    contract = await compute.contract("fail", service="test")
    result = await compute.run(compute.run_request(contract))
    assert result.status == RunStatus.FAILED
    assert result.exit_code == 3
    assert "something broke" in result.stderr_tail
    stored = compute.objects(output_prefix(contract))
    assert stored[output_prefix(contract) + "stdout.txt"] == b"starting\n"


async def test_timed_out_run_is_killed_with_its_whole_tree(
    compute: ComputeHarness, marker_dir: Path
) -> None:
    marker = marker_dir / "sleepy.pgid"
    contract = await compute.contract("sleepy", {"marker": str(marker)}, service="test")
    result = await compute.run(compute.run_request(contract))
    assert result.status == RunStatus.TIMED_OUT
    assert result.signal == 9
    assert result.usage.wall_seconds >= contract.max_runtime_seconds
    pgid = int(marker.read_text())
    assert await wait_until_group_gone(pgid) == []


async def test_cancelling_the_run_kills_its_whole_tree(
    compute: ComputeHarness, marker_dir: Path
) -> None:
    marker = marker_dir / "long.pgid"
    contract = await compute.contract("long", {"marker": str(marker)}, service="test")
    handle = await compute.start(
        RUN_ACTIVITY, compute.run_request(contract), service="test", heartbeat_timeout=2
    )
    pgid = await read_marker(marker)
    assert group_members(pgid), "the program should be running"
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    # The activity acknowledged the cancellation (WAIT_CANCELLATION_COMPLETED), so the runner
    # has already killed the group.
    assert isinstance(failure.value.cause, CancelledError | ActivityError)
    assert await wait_until_group_gone(pgid) == []


async def test_a_forked_child_does_not_outlive_the_program(
    compute: ComputeHarness, marker_dir: Path
) -> None:
    marker = marker_dir / "forker.pgid"
    contract = await compute.contract("forker", {"marker": str(marker)}, service="test")
    result = await compute.run(compute.run_request(contract))
    assert result.status == RunStatus.SUCCEEDED
    assert await wait_until_group_gone(int(marker.read_text())) == []


async def test_memory_hog_is_stopped_by_its_limit_and_fails(compute: ComputeHarness) -> None:
    contract = await compute.contract("memory-hog", service="test")
    result = await compute.run(compute.run_request(contract))
    assert result.status == RunStatus.FAILED
    assert result.exit_code != 0
    assert "MemoryError" in result.stderr_tail


async def test_output_too_large_is_reported_and_not_uploaded(compute: ComputeHarness) -> None:
    contract = await compute.contract("too-large", service="test")
    result = await compute.run(compute.run_request(contract))
    assert result.status == RunStatus.OUTPUT_TOO_LARGE
    assert result.outputs == []
    assert compute.objects(output_prefix(contract)) == {}


async def test_retry_overwrites_outputs_instead_of_duplicating(compute: ComputeHarness) -> None:
    contract = await compute.contract("echo", service="test")
    request = compute.run_request(contract, b"same input\n")
    first = await compute.run(request)
    second = await compute.run(request)
    assert first.outputs == second.outputs
    stored = compute.objects(output_prefix(contract))
    assert sorted(stored) == sorted(o.key for o in first.outputs)
    assert stored[output_prefix(contract) + "files/copy"] == b"same input\n"


async def test_progress_is_heartbeated(compute: ComputeHarness, marker_dir: Path) -> None:
    marker = marker_dir / "steps.pgid"
    contract = await compute.contract("steps", {"marker": str(marker)}, service="test")
    handle = await compute.start(RUN_ACTIVITY, compute.run_request(contract), service="test")
    seen: list[RunProgress] = []
    result = asyncio.ensure_future(handle.result())
    while not result.done() and not any((p.fraction or 0) >= 0.3 for p in seen):
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if pending.heartbeat_details.payloads:
                details = await compute.client.data_converter.decode(
                    pending.heartbeat_details.payloads
                )
                seen.append(RunProgress.model_validate(details[0]))
        await asyncio.sleep(0.2)
    await result
    running = [p for p in seen if p.phase == "running"]
    assert running, seen
    assert any(p.fraction is not None and 0 < p.fraction <= 1 for p in running), seen
    assert all(p.elapsed_seconds >= 0 and p.cpu_seconds >= 0 for p in running)
    assert [p.fraction or 0 for p in running] == sorted(p.fraction or 0 for p in running)


@pytest.mark.parametrize(
    ("calculation", "parameters", "error_type"),
    [
        ("no-such-calculation", {}, "UnknownCalculation"),
        ("echo", {"unexpected": 1}, "BadParameters"),
        ("sleepy", {"marker": "relative/path"}, "BadParameters"),
        ("sleepy", {}, "BadParameters"),
    ],
)
async def test_contracting_refuses_clearly_and_without_retry(
    compute: ComputeHarness, calculation: str, parameters: dict, error_type: str
) -> None:
    with pytest.raises(ContractRefused) as refused:
        compute.draft(calculation, parameters, service="test")
    assert refused.value.kind == error_type and refused.value.message


async def test_a_missing_input_is_a_clear_non_retryable_error(compute: ComputeHarness) -> None:
    contract = await compute.contract("echo", service="test")
    with pytest.raises(WorkflowFailureError) as failure:
        await compute.run(compute.run_request(contract, input_bytes=None))
    assert_non_retryable(failure.value, "InputMissing")


def assert_non_retryable(failure: WorkflowFailureError, error_type: str) -> None:
    activity_error = failure.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.retry_state == RetryState.NON_RETRYABLE_FAILURE
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == error_type
    assert cause.non_retryable
    assert cause.message


async def test_symlinks_and_unkeyable_names_are_not_uploaded(compute: ComputeHarness) -> None:
    contract = await compute.contract("odd-outputs", service="test")
    result = await compute.run(compute.run_request(contract))
    assert result.status == RunStatus.SUCCEEDED, result.stderr_tail
    prefix = output_prefix(contract)
    assert sorted(compute.objects(prefix)) == [
        prefix + "files/ok.txt",
        prefix + "stderr.txt",
        prefix + "stdout.txt",
    ]
    assert result.skipped_outputs == ["bad\\\\name"]
