"""``jobsheet smoke``: one workflow through Temporal and S3, for people and with --json."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from minio import Minio

from jobsheet.core.settings import Settings
from tests.cli.conftest import PROJECT_ROOT, Outcome


def stack_env(settings: Settings) -> dict[str, str]:
    """The environment of an operator's shell on the stack ``settings`` describe."""
    assert settings.s3_access_key and settings.s3_secret_key and settings.payload_keys
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(settings.state_dir),
        "PYTHONPATH": str(PROJECT_ROOT),
        "JOBSHEET_STATE_DIR": str(settings.state_dir),
        "JOBSHEET_TEMPORAL_ADDRESS": settings.temporal_address or "",
        "JOBSHEET_TEMPORAL_NAMESPACE": settings.temporal_namespace or "default",
        "JOBSHEET_S3_ENDPOINT": settings.s3_endpoint or "",
        "JOBSHEET_S3_ACCESS_KEY": settings.s3_access_key.get_secret_value(),
        "JOBSHEET_S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
        "JOBSHEET_BUCKET": settings.bucket,
        "JOBSHEET_PAYLOAD_KEYS": settings.payload_keys.get_secret_value(),
    }


async def smoke(settings: Settings, *args: str) -> Outcome:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobsheet.cli",
        "smoke",
        *args,
        env=stack_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    assert proc.returncode is not None
    return Outcome(proc.returncode, stdout.decode(), stderr.decode())


async def test_smoke(settings: Settings, s3: Minio) -> None:
    as_json = await smoke(settings, "--json")
    assert as_json.code == 0, as_json.stderr
    outcome = as_json.json()
    key = outcome["object"].removeprefix(f"s3://{settings.bucket}/")
    assert s3.stat_object(settings.bucket, key).size == outcome["size"]
    assert outcome["web_ui"].endswith(f"/workflows/{outcome['workflow_id']}")

    people = await smoke(settings)
    assert people.code == 0, people.stderr
    lines = people.stdout.splitlines()
    assert re.fullmatch(r"smoke workflow smoke-\S+ completed", lines[0])
    assert lines[1].startswith(f"wrote s3://{settings.bucket}/smoke/")
    assert lines[2].startswith("see it in the Temporal Web UI: http")
