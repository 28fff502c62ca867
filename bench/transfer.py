"""Benchmark: moving a job's data through PARs against a direct S3 put and get.

Uploads and downloads a 256 MiB file through presigned URLs with the SDK's own code paths
(``jobsheet.sdk.transfer``: chunked streaming PUT with Content-Length; streaming GET with size
and sha256 verification), and the same file with a credentialed minio client (``fput_object`` /
``fget_object``), in the same run against the same S3 server, which it starts on a free
127.0.0.1 port and stops at the end. Prints the median of each and the PAR/direct ratios.
The PAR download always checks the sha256, so it is also compared with a direct get followed
by the same check. (A direct put over plain HTTP hashes the body for its SigV4 signature; a
presigned PUT does not, so the PAR upload can come out faster.)

    .venv/bin/python -m bench.transfer [--size-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from minio import Minio
from pydantic import SecretStr

from jobsheet.core import processes
from jobsheet.core.objectstore import ensure_bucket, internal_client, presign_client
from jobsheet.core.settings import Settings
from jobsheet.sdk.transfer import download_file, file_digest, upload_file
from tests.servers import start_s3_server

URL_LIFETIME = timedelta(minutes=30)


def make_input(path: Path, size: int) -> None:
    chunk = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for n in range(size >> 20):
            handle.write(chunk[n % 251 :] + chunk[: n % 251])


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def par_upload(settings: Settings, source: Path, key: str) -> float:
    url = presign_client(settings).presigned_put_object(settings.bucket, key, URL_LIFETIME)
    return timed(lambda: asyncio.run(upload_file(url, source)))


def par_download(settings: Settings, key: str, target: Path, size: int, sha256: str) -> float:
    url = presign_client(settings).presigned_get_object(settings.bucket, key, URL_LIFETIME)
    target.unlink(missing_ok=True)
    return timed(lambda: asyncio.run(download_file(url, target, size=size, sha256=sha256)))


def direct_upload(s3: Minio, bucket: str, source: Path, key: str) -> float:
    return timed(lambda: s3.fput_object(bucket, key, str(source)))


def direct_download(s3: Minio, bucket: str, key: str, target: Path) -> float:
    target.unlink(missing_ok=True)
    return timed(lambda: s3.fget_object(bucket, key, str(target)))


def sha256_seconds(path: Path) -> float:
    """What checking a direct download against its manifest adds (the PAR path always checks)."""
    return timed(lambda: file_digest(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        root = Path(tmp)
        server = start_s3_server(root / "s3")
        try:
            settings = Settings(
                state_dir=root / "state",
                s3_endpoint=server.endpoint,
                s3_access_key=SecretStr(server.access_key),
                s3_secret_key=SecretStr(server.secret_key),
                bucket=f"bench-{uuid.uuid4().hex[:12]}",
            )
            s3 = internal_client(settings)
            ensure_bucket(s3, settings.bucket)
            source = root / "input.bin"
            make_input(source, size)
            digest = file_digest(source)
            results: dict[str, list[float]] = {
                k: [] for k in ("par put", "par get", "s3 put", "s3 get", "s3 get+sha")
            }
            for n in range(args.repeat):
                par_key, s3_key = f"par/{n}", f"direct/{n}"
                results["par put"].append(par_upload(settings, source, par_key))
                results["s3 put"].append(direct_upload(s3, settings.bucket, source, s3_key))
                results["par get"].append(
                    par_download(settings, par_key, root / "par.out", digest.size, digest.sha256)
                )
                results["s3 get"].append(
                    direct_download(s3, settings.bucket, s3_key, root / "s3.out")
                )
                results["s3 get+sha"].append(
                    results["s3 get"][-1] + sha256_seconds(root / "s3.out")
                )
                got = hashlib.sha256((root / "s3.out").read_bytes()).hexdigest()
                assert got == digest.sha256, "the direct download differs from the input"
        finally:
            processes.stop_process(server.record)
    print(f"S3 server: {server.kind}; file {args.size_mib} MiB; median of {args.repeat} runs")
    medians = {name: statistics.median(times) for name, times in results.items()}
    for name, seconds in medians.items():
        print(f"  {name:10} {seconds:7.2f}s  {args.size_mib / seconds:8.1f} MiB/s")
    print(f"upload   PAR/direct ratio: {medians['par put'] / medians['s3 put']:.2f}")
    print(f"download PAR/direct ratio: {medians['par get'] / medians['s3 get']:.2f}")
    print(
        "download PAR/direct ratio, both checked against the sha256: "
        f"{medians['par get'] / medians['s3 get+sha']:.2f}"
    )


if __name__ == "__main__":
    main()
