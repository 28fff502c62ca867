"""The storage activities behind PARs dying with their job: sealing outputs where no PAR writes,
and the job policy that refuses an unknown service or calculation at once."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from minio import Minio
from temporalio.testing import ActivityEnvironment

from activities.storage import SealOutputsInput, StorageActivities
from jobsheet.compute.config import load_compute_config
from jobsheet.compute.contracts import policy_refusal
from jobsheet.compute.models import OutputObject
from jobsheet.core.settings import Settings
from jobsheet.jobs.models import output_prefix, staging_prefix

UID = "job-" + "5" * 32
TEST_CALCULATIONS = Path(__file__).parent.parent / "compute" / "test_calculations.toml"


def put(s3: Minio, settings: Settings, key: str, data: bytes) -> OutputObject:
    s3.put_object(settings.bucket, key, io.BytesIO(data), len(data))
    return OutputObject(
        key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(), kind="file"
    )


def read(s3: Minio, settings: Settings, key: str) -> bytes:
    response = s3.get_object(settings.bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def keys(s3: Minio, settings: Settings, prefix: str) -> set[str]:
    found = s3.list_objects(settings.bucket, prefix=prefix, recursive=True)
    return {item.object_name for item in found if item.object_name}


def test_sealing_keeps_only_outputs_that_match_the_runs_report(
    settings: Settings, s3: Minio
) -> None:
    staging, sealed = staging_prefix(UID), output_prefix(UID)
    good = put(s3, settings, staging + "files/good.txt", b"as reported\n")
    empty = put(s3, settings, staging + "stderr.txt", b"")
    changed = put(s3, settings, staging + "files/changed.txt", b"as reported\n")
    put(s3, settings, changed.key, b"overwritten through the bucket-write PAR\n")
    missing = OutputObject(key=staging + "files/missing.txt", size=1, sha256="0" * 64, kind="file")
    elsewhere = put(s3, settings, f"jobs/{UID}/input", b"not an output\n")

    storage = StorageActivities(settings)
    request = SealOutputsInput(job_uid=UID, outputs=[good, empty, changed, missing, elsewhere])
    result = ActivityEnvironment().run(storage.seal_outputs, request)

    assert [output.key for output in result.outputs] == [
        sealed + "files/good.txt",
        sealed + "stderr.txt",
    ]
    assert result.outputs[0].sha256 == good.sha256 and result.outputs[0].size == good.size
    assert result.discarded == [changed.key, missing.key, elsewhere.key]
    assert keys(s3, settings, sealed) == {sealed + "files/good.txt", sealed + "stderr.txt"}
    assert read(s3, settings, sealed + "files/good.txt") == b"as reported\n"

    # Idempotent: a retried attempt keeps the copies already made (even with staging gone).
    for key in keys(s3, settings, staging):
        s3.remove_object(settings.bucket, key)
    again = ActivityEnvironment().run(storage.seal_outputs, request)
    assert again == result


@pytest.mark.parametrize(
    ("service", "calculation", "error", "named"),
    [
        ("nosuch", "echo", "UnknownService", "known services: other, test"),
        ("test", "nosuch", "UnknownCalculation", "echo, fail"),
        ("other", "fail", "UnknownCalculation", "it runs on: test"),
    ],
)
def test_the_job_policy_refuses_what_the_operator_does_not_offer(
    service: str, calculation: str, error: str, named: str
) -> None:
    refusal = policy_refusal(
        load_compute_config(TEST_CALCULATIONS), service=service, calculation=calculation
    )
    assert refusal.startswith(f"{error}: ")
    assert named in refusal


def test_the_job_policy_lets_an_offered_calculation_through() -> None:
    config = load_compute_config(TEST_CALCULATIONS)
    assert policy_refusal(config, service="other", calculation="echo") == ""
