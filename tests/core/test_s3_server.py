"""The S3 server the tests start is real: it verifies signatures and expiry of presigned URLs."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
from minio import Minio

from jobsheet.core.objectstore import presign_client
from jobsheet.core.settings import Settings


def test_presigned_put_then_get_round_trips_bytes(settings: Settings, s3: Minio) -> None:
    signer = presign_client(settings)
    payload = b"jobsheet \x00\x01 bytes" * 1000
    put_url = signer.presigned_put_object(
        settings.bucket, "in/data.bin", expires=timedelta(minutes=5)
    )
    assert httpx.put(put_url, content=payload).status_code == 200
    get_url = signer.presigned_get_object(
        settings.bucket, "in/data.bin", expires=timedelta(minutes=5)
    )
    response = httpx.get(get_url)
    assert response.status_code == 200
    assert response.content == payload
    assert s3.stat_object(settings.bucket, "in/data.bin").size == len(payload)


def test_tampered_presigned_url_is_refused(settings: Settings, s3: Minio) -> None:
    signer = presign_client(settings)
    s3.put_object(settings.bucket, "a.txt", __import__("io").BytesIO(b"a"), 1)
    s3.put_object(settings.bucket, "b.txt", __import__("io").BytesIO(b"b"), 1)
    url = signer.presigned_get_object(settings.bucket, "a.txt", expires=timedelta(minutes=5))
    assert httpx.get(url).content == b"a"
    # Another key under the same signature, and a forged longer expiry, are both refused.
    assert httpx.get(url.replace("/a.txt", "/b.txt")).status_code == 403
    forged = url.replace("X-Amz-Expires=300", "X-Amz-Expires=604800")
    assert forged != url
    assert httpx.get(forged).status_code == 403
    put_url = signer.presigned_put_object(settings.bucket, "c.txt", expires=timedelta(minutes=5))
    assert httpx.put(put_url.replace("/c.txt", "/d.txt"), content=b"x").status_code == 403
    assert [o.object_name for o in s3.list_objects(settings.bucket)] == ["a.txt", "b.txt"]


def test_expired_presigned_url_is_refused(settings: Settings, s3: Minio) -> None:
    signer = presign_client(settings)
    put_url = signer.presigned_put_object(settings.bucket, "late.txt", expires=timedelta(seconds=1))
    time.sleep(2.5)
    response = httpx.put(put_url, content=b"too late")
    assert response.status_code in (400, 403)
    assert list(s3.list_objects(settings.bucket)) == []


def test_presigned_urls_name_the_public_endpoint(settings: Settings) -> None:
    public = settings.model_copy(update={"s3_public_endpoint": "files.example.org:9000"})
    url = presign_client(public).presigned_get_object(
        public.bucket, "k", expires=timedelta(minutes=1)
    )
    assert url.startswith(f"http://files.example.org:9000/{public.bucket}/k?")


async def test_compute_pars_are_signed_for_the_compute_endpoint(settings: Settings) -> None:
    from datetime import UTC, datetime

    from activities.jobs import JobActivities
    from jobsheet.jobs.messages import StartRunInput, SubmissionParsInput
    from jobsheet.jobs.models import JobSheet

    split = settings.model_copy(
        update={"s3_public_endpoint": "files.example.org:9000", "s3_compute_endpoint": "minio:9000"}
    )
    steps = JobActivities(None, split)  # type: ignore[arg-type]  # presigning needs no client
    later = datetime.now(UTC) + timedelta(minutes=5)
    uid = "job-" + "0" * 32
    read = await steps.start_run(StartRunInput(sheet=JobSheet(uid=uid), input_until=later))
    upload = steps.issue_submission_pars(
        SubmissionParsInput(
            uid=uid,
            write_prefix=f"jobs/{uid}/staging/",
            write_until=later,
            upload_until=later,
            url_seconds=60,
        )
    ).upload
    assert read.url.startswith("http://minio:9000/")
    assert upload.url.startswith("http://files.example.org:9000/")
