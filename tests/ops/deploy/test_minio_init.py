"""The MinIO init job (jobsheet/ops/minio_init.py): its bucket step against the session's real
S3 server, the whole job as compose runs it when that server is MinIO (its admin API makes the
application's user), and the policy that limits that user to the bucket."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error

from jobsheet.core.objectstore import ensure_bucket
from jobsheet.core.settings import load_settings
from jobsheet.ops.minio_init import POLICY_NAME, MinioInit, app_policy, wait_for_minio
from tests.ops.deploy.compose_file import load, local_environment
from tests.servers import S3Server


def test_the_application_policy_allows_its_bucket_and_nothing_else() -> None:
    policy = app_policy("jobsheet")
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::jobsheet", "arn:aws:s3:::jobsheet/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    assert not [a for a in actions if "*" in a]
    # Objects only: the bucket itself (its policy, its deletion, its versioning) is not theirs.
    assert not actions & {"s3:DeleteBucket", "s3:PutBucketPolicy", "s3:CreateBucket"}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions


def init_for(s3_server: S3Server, bucket: str) -> MinioInit:
    return MinioInit(
        endpoint=s3_server.endpoint,
        secure=False,
        region="us-east-1",
        bucket=bucket,
        root_user=s3_server.access_key,
        root_password=s3_server.secret_key,
        app_access_key="jobsheet-app",
        app_secret_key=uuid.uuid4().hex,
    )


def test_the_bucket_step_waits_for_the_server_and_is_idempotent(s3_server: S3Server) -> None:
    bucket = f"deploy-{uuid.uuid4().hex[:12]}"
    client = init_for(s3_server, bucket).root_client()
    wait_for_minio(client, bucket, timeout=10)
    assert ensure_bucket(client, bucket) is True
    assert ensure_bucket(client, bucket) is False
    assert client.bucket_exists(bucket)


def run_minio_init(s3_server: S3Server, root: Path, secrets: dict[str, str]) -> dict[str, str]:
    """The minio-init service's environment, pointed at the session's server."""
    service = load()["services"]["minio-init"]
    env, changed = local_environment(
        service,
        root=root,
        secrets=secrets,
        addresses={"minio:9000": s3_server.endpoint},
        settings={},
        dotenv={},
    )
    assert changed == {
        "JOBSHEET_S3_ENDPOINT",
        "JOBSHEET_SECRETS_DIR",
        "MINIO_ROOT_USER_FILE",
        "MINIO_ROOT_PASSWORD_FILE",
    }
    return env


def test_reads_what_compose_gives_it(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root account from MINIO_ROOT_*_FILE, the application's keys from JOBSHEET_SECRETS_DIR."""
    secrets = {
        "minio_root_user": "root-user",
        "minio_root_password": "root-password",
        "jobsheet_s3_access_key": "jobsheet-app",
        "jobsheet_s3_secret_key": "app-secret",
    }
    env = run_minio_init(s3_server, tmp_path, secrets)
    for key in [k for k in os.environ if k.startswith(("JOBSHEET_", "MINIO_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    init = MinioInit.from_environment(load_settings())
    assert (init.root_user, init.root_password) == ("root-user", "root-password")
    assert (init.app_access_key, init.app_secret_key) == ("jobsheet-app", "app-secret")
    assert (init.endpoint, init.bucket) == (s3_server.endpoint, "jobsheet")


@pytest.mark.skipif(
    not shutil.which("minio"),
    reason="the application's user and its policy need MinIO's admin API, and no `minio` binary "
    "is on PATH here (rclone serve s3, the tests' S3 server then, has no admin API)",
)
def test_the_whole_job_makes_a_user_limited_to_the_bucket(
    s3_server: S3Server, tmp_path: Path
) -> None:
    assert s3_server.kind == "minio"
    app_secret = uuid.uuid4().hex
    secrets = {
        "minio_root_user": s3_server.access_key,
        "minio_root_password": s3_server.secret_key,
        "jobsheet_s3_access_key": f"app-{uuid.uuid4().hex[:8]}",
        "jobsheet_s3_secret_key": app_secret,
    }
    env = run_minio_init(s3_server, tmp_path, secrets)
    process_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}
    for _ in range(2):  # idempotent
        result = subprocess.run(
            [sys.executable, "-m", "jobsheet.ops.minio_init"],
            env=process_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert POLICY_NAME in result.stdout
    app = Minio(
        s3_server.endpoint,
        access_key=secrets["jobsheet_s3_access_key"],
        secret_key=app_secret,
        secure=False,
        region="us-east-1",
    )
    bucket = env["JOBSHEET_BUCKET"]
    app.put_object(bucket, "probe", io.BytesIO(b"x"), 1)
    assert app.get_object(bucket, "probe").read() == b"x"
    other = f"other-{uuid.uuid4().hex[:8]}"
    init_for(s3_server, other).root_client().make_bucket(other)
    with pytest.raises(S3Error):
        app.list_objects(other).__next__()
    with pytest.raises(S3Error):
        app.make_bucket(f"mine-{uuid.uuid4().hex[:8]}")
