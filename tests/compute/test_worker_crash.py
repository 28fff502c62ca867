"""A compute worker SIGKILLed mid-run: the heartbeat timeout notices and another worker reruns,
and the run directory the dead worker left is removed when the next worker starts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from temporalio.client import Client
from temporalio.worker import Worker

from jobsheet.compute.models import RUN_ACTIVITY, RunResult, RunStatus
from jobsheet.compute.runner import kill_group
from jobsheet.compute.sandbox import run_dir_name
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import payload_key_ring
from tests.compute.conftest import ComputeHarness, output_prefix
from tests.compute.harness import CallComputeWorkflow
from tests.compute.test_outcomes import read_marker, wait_until_group_gone
from tests.markers import marker_dir_fixture  # noqa: F401 (the marker_dir fixture)
from tests.process_groups import group_members

ROOT = Path(__file__).resolve().parents[2]


def compute_worker_env(settings: Settings) -> dict[str, str]:
    """A compute worker's environment: Temporal, the calculations and queues, no S3 credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSHEET_")}
    env.update(
        {
            "JOBSHEET_TEMPORAL_ADDRESS": settings.temporal_target,
            "JOBSHEET_TEMPORAL_NAMESPACE": settings.temporal_connect_config()["namespace"],
            "JOBSHEET_CALCULATIONS_FILE": str(settings.calculations_file),
            "JOBSHEET_COMPUTE_TASK_QUEUE_PREFIX": settings.compute_task_queue_prefix,
            "JOBSHEET_STATE_DIR": str(settings.state_dir / "compute-worker"),
            # A Temporal worker holds the payload keys to read its tasks.
            "JOBSHEET_PAYLOAD_KEYS": payload_key_ring(settings).serialise(),
        }
    )
    return env


class WorkerProcesses:
    """``worker.py --role compute`` subprocesses, each stopped by pid at the end.

    Their temporary directory (where run directories go) is ``run_base``, this test's own.
    """

    def __init__(self, settings: Settings, run_base: Path) -> None:
        self.env = {**compute_worker_env(settings), "TMPDIR": str(run_base)}
        self.run_base = run_base
        self.started: list[subprocess.Popen[str]] = []

    async def start(self) -> subprocess.Popen[str]:
        proc = self._spawn()
        assert proc.stdout is not None
        said: list[str] = []
        while not said or not said[-1].startswith("worker ready: role=compute"):
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
            assert line, "".join(said)  # the worker exited before it was ready
            said.append(line)
        return proc

    def _spawn(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py"), "--role", "compute", "--service", "test"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stdout is not None
            print(f"worker {proc.pid} said:\n{proc.stdout.read()}")


@pytest.fixture
def worker_processes(compute_settings: Settings) -> Iterator[WorkerProcesses]:
    run_base = Path(tempfile.mkdtemp(prefix="jobsheet-test-tmp-"))
    run_base.chmod(0o755)
    workers = WorkerProcesses(compute_settings, run_base)
    try:
        yield workers
    finally:
        workers.stop_all()
        shutil.rmtree(run_base, ignore_errors=True)


def run_dirs_of(base: Path, pid: int) -> list[Path]:
    return sorted(base.glob(f"jobsheet-run-{pid}-*"))


async def test_sigkilled_worker_run_is_finished_by_another_worker(
    client: Client,
    compute_settings: Settings,
    worker_processes: WorkerProcesses,
    task_queue: str,
    s3: Minio,
    marker_dir: Path,
) -> None:
    marker = marker_dir / "steps.pgid"
    first = await worker_processes.start()
    async with Worker(client, task_queue=task_queue, workflows=[CallComputeWorkflow]):
        harness = ComputeHarness(
            client=client,
            settings=compute_settings,
            s3=s3,
            task_queue=task_queue,
        )
        contract = await harness.contract("steps", {"marker": str(marker)}, service="test")
        handle = await harness.start(
            RUN_ACTIVITY,
            harness.run_request(contract),
            service="test",
            heartbeat_timeout=2,
            # A dead worker's last long poll can swallow a retry until the server notices.
            attempts=10,
        )
        first_group = await read_marker(marker)
        marker.unlink()
        base = worker_processes.run_base
        [left_behind] = run_dirs_of(base, first.pid)
        # Run directories the next worker must leave alone: one named after a live process
        # (this one: as if another worker were running), and one not named like the runner's.
        live = base / run_dir_name(os.getpid())
        foreign = base / "jobsheet-run-notours"
        for directory in (live, foreign):
            directory.mkdir()
        try:
            first.send_signal(signal.SIGKILL)
            first.wait()
            # The program's leader has PR_SET_PDEATHSIG: it dies with its worker.
            assert await wait_until_group_gone(first_group) == []
            assert left_behind.is_dir()  # a SIGKILLed worker cannot clean up
            await worker_processes.start()
            assert not left_behind.exists()  # the next worker's start removed it
            assert live.is_dir() and foreign.is_dir()
            result = RunResult.model_validate(await handle.result())
        finally:
            kill_group(first_group)
    assert result.status == RunStatus.SUCCEEDED
    assert result.attempt >= 2
    second_group = int(marker.read_text())
    assert second_group != first_group and group_members(second_group) == []
    prefix = output_prefix(contract)
    stored = harness.objects(prefix)
    assert sorted(stored) == sorted(
        prefix + name for name in ("files/a.txt", "files/sub/b.txt", "stderr.txt", "stdout.txt")
    )
    assert stored[prefix + "files/a.txt"] == b"alpha\n"
    assert stored[prefix + "files/sub/b.txt"] == b"beta\n"
    # stdout is the second attempt's alone: twelve progress lines, not the first attempt's too.
    assert stored[prefix + "stdout.txt"].count(b"PROGRESS") == 12
    for entry in result.outputs:
        assert hashlib.sha256(stored[entry.key]).hexdigest() == entry.sha256
