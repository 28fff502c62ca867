"""Benchmark: the compute runner's overhead against running the same program directly.

Runs the shipped ``checksum`` calculation (sha256sum + wc) on a small and a 100 MiB input, once
through the real run activity (contract book check, download through the read PAR, isolated
run, upload of every output through the bucket-write PAR and the gateway) and once as a plain
subprocess on a local copy of the same input, and prints the ratios. It starts its own Temporal
dev server, S3 server and PAR gateway on free 127.0.0.1 ports and stops them at the end.

    .venv/bin/python -m bench.compute [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.worker import Worker

from bench.servers import bench_servers
from jobsheet.compute.config import load_compute_config
from jobsheet.compute.models import RunResult, RunStatus
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import exit_without_teardown
from tests.api_server import start_api
from tests.compute.conftest import ComputeHarness
from tests.compute.harness import CallComputeWorkflow
from worker import compute_workers

SIZES = {"small (4 KiB)": 4 << 10, "large (100 MiB)": 100 << 20}
CALCULATION = "checksum"
SERVICE = "standard"


def run_directly(settings: Settings, data: bytes) -> float:
    """Seconds to run the same argv on a local copy of the input, without the runner."""
    config = load_compute_config(settings.calculations_file)
    calculation = config.calculation(CALCULATION, service=SERVICE)
    with tempfile.TemporaryDirectory() as tmp:
        input_path, output_dir = Path(tmp) / "input", Path(tmp) / "out"
        input_path.write_bytes(data)
        output_dir.mkdir()
        argv = calculation.render_argv(
            {}, input_path=input_path, output_dir=output_dir, base_dir=config.base_dir
        )
        started = time.perf_counter()
        subprocess.run(argv, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


async def run_through_runner(harness: ComputeHarness, data: bytes) -> tuple[float, RunResult]:
    """Seconds for the run activity (as seen by the calling workflow), input already uploaded."""
    contract = await harness.contract(CALCULATION, service=SERVICE)
    request = harness.run_request(contract, None)
    key = request.input.key
    harness.s3.put_object(harness.settings.bucket, key, io.BytesIO(data), len(data))
    started = time.perf_counter()
    result = await harness.run(request, heartbeat_timeout=30)
    elapsed = time.perf_counter() - started
    assert result.status == RunStatus.SUCCEEDED, result.stderr_tail
    return elapsed, result


async def bench(repeat: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="jobsheet-bench-"))
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with bench_servers(root, compute_task_queue_prefix=f"{queue}-") as (env, base):
        gateway = start_api(base)
        try:
            settings = gateway.settings
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
                workers = compute_workers(env.client, settings, executor, [SERVICE])
                workers.append(
                    Worker(env.client, task_queue=queue, workflows=[CallComputeWorkflow])
                )
                for worker in workers:
                    await worker.__aenter__()
                try:
                    harness = ComputeHarness(
                        client=env.client,
                        settings=settings,
                        s3=internal_client(settings),
                        task_queue=queue,
                    )
                    await report(harness, settings, repeat)
                finally:
                    for worker in workers:
                        await worker.__aexit__(None, None, None)
        finally:
            gateway.stop()


async def report(harness: ComputeHarness, settings: Settings, repeat: int) -> None:
    print(f"calculation={CALCULATION} repeat={repeat} (median seconds)")
    print(f"{'input':<18} {'direct':>9} {'runner':>9} {'ratio':>7} {'overhead':>9}")
    for label, size in SIZES.items():
        data = os.urandom(size)
        await run_through_runner(harness, data[:1024])  # warm-up: contract book, connections
        direct = statistics.median(run_directly(settings, data) for _ in range(repeat))
        runs = [(await run_through_runner(harness, data))[0] for _ in range(repeat)]
        runner = statistics.median(runs)
        print(
            f"{label:<18} {direct:>9.3f} {runner:>9.3f} {runner / direct:>6.1f}x "
            f"{runner - direct:>8.3f}s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    started = datetime.now(UTC)
    asyncio.run(bench(args.repeat))
    print(f"finished in {(datetime.now(UTC) - started) / timedelta(seconds=1):.1f}s")
    exit_without_teardown(0)


if __name__ == "__main__":
    main()
