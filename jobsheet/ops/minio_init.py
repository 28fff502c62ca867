"""One shot for docker-compose.yml: the jobsheet bucket and the application's own S3 user.

``python -m jobsheet.ops.minio_init`` logs in with MinIO's root account (read from the files
``MINIO_ROOT_USER_FILE`` and ``MINIO_ROOT_PASSWORD_FILE``, compose secrets), waits for MinIO,
then makes sure that the bucket exists, that a policy allowing that bucket and nothing else
exists, and that the application's user (``JOBSHEET_S3_ACCESS_KEY`` and ``..._SECRET_KEY``, from
``JOBSHEET_SECRETS_DIR`` like every jobsheet service) exists with exactly that policy. Every
step is idempotent, so it runs at each ``docker compose up``; a changed application secret key
in the secrets file is applied on the next run. No jobsheet service ever holds the root account.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider

from jobsheet.core.objectstore import ensure_bucket
from jobsheet.core.settings import Settings, load_settings

POLICY_NAME = "jobsheet-app"
WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class MinioInit:
    """Where MinIO is, its root account, and what the application gets."""

    endpoint: str
    secure: bool
    region: str
    bucket: str
    root_user: str
    root_password: str
    app_access_key: str
    app_secret_key: str

    @classmethod
    def from_environment(cls, settings: Settings) -> MinioInit:
        app_access, app_secret = settings.s3_credentials()
        return cls(
            endpoint=settings.s3_endpoint_resolved,
            secure=settings.s3_secure,
            region=settings.s3_region,
            bucket=settings.bucket,
            root_user=_read_secret("MINIO_ROOT_USER_FILE"),
            root_password=_read_secret("MINIO_ROOT_PASSWORD_FILE"),
            app_access_key=app_access,
            app_secret_key=app_secret,
        )

    def root_client(self) -> Minio:
        return Minio(
            self.endpoint,
            access_key=self.root_user,
            secret_key=self.root_password,
            secure=self.secure,
            region=self.region,
        )

    def root_admin(self) -> MinioAdmin:
        return MinioAdmin(
            endpoint=self.endpoint,
            credentials=StaticProvider(self.root_user, self.root_password),
            region=self.region,
            secure=self.secure,
        )


def _read_secret(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        raise SystemExit(f"minio-init: set {variable} to the file that holds it")
    value = Path(path).read_text().strip()
    if not value:
        raise SystemExit(f"minio-init: {path} ({variable}) is empty")
    return value


def app_policy(bucket: str) -> dict[str, Any]:
    """An IAM policy that lets its holder use ``bucket``'s objects and nothing else: no other
    bucket, no bucket policy, versioning or deletion of the bucket itself."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def wait_for_minio(client: Minio, bucket: str, *, timeout: float = WAIT_SECONDS) -> None:
    """Return once MinIO answers an authenticated request with the root account."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.bucket_exists(bucket)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"minio-init: MinIO never answered: {exc}") from None
            time.sleep(1)


def ensure_app_user(admin: MinioAdmin, init: MinioInit) -> None:
    """Create or update the application's user, with exactly the bucket's policy."""
    if init.app_access_key == init.root_user:
        raise SystemExit("minio-init: the application's access key must not be the root user")
    admin.policy_add(POLICY_NAME, policy=app_policy(init.bucket))
    admin.user_add(init.app_access_key, init.app_secret_key)
    # Sets the user's policies to exactly this one (unlike attach, which adds and refuses a
    # policy already attached), so a second run changes nothing.
    admin.policy_set(POLICY_NAME, user=init.app_access_key)


def run(init: MinioInit) -> None:
    """Every step, in order; each is idempotent."""
    client = init.root_client()
    wait_for_minio(client, init.bucket)
    created = ensure_bucket(client, init.bucket)
    print(f"minio-init: bucket {init.bucket} {'created' if created else 'exists'}", flush=True)
    ensure_app_user(init.root_admin(), init)
    print(
        f"minio-init: user {init.app_access_key} may use {init.bucket} only "
        f"(policy {POLICY_NAME}: {json.dumps(app_policy(init.bucket))})",
        flush=True,
    )


def main() -> None:
    try:
        run(MinioInit.from_environment(load_settings()))
    except SystemExit:
        raise
    except Exception as exc:
        print(f"minio-init: failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
