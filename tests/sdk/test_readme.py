"""The README's SDK example, run as a user would: a separate process whose environment holds the
API's URL, the user's name and config dir, and a Temporal address where nothing listens. It completes a real job through the public API."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from jobsheet.identity.keys import save_identity
from jobsheet.jobs.models import JobState
from tests.sdk.conftest import CLOSED_TEMPORAL, SdkEnv

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_sdk_example() -> str:
    """The first Python block under "With the Python SDK" in the README."""
    section = README.read_text().split("### With the Python SDK", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README has no Python example for the SDK"
    return match.group(1)


def user_environment(sdk_env: SdkEnv, home: Path) -> dict[str, str]:
    """Only what a user sets: no TEMPORAL_* or S3 variable, and no other JOBSHEET_* setting."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "PYTHONPATH": str(README.parent),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "JOBSHEET_API_URL": sdk_env.settings.api_url,
        "JOBSHEET_USER": sdk_env.deployment.user.name,
        "JOBSHEET_TEMPORAL_ADDRESS": CLOSED_TEMPORAL,
    }


async def test_readme_sdk_example_in_a_user_process(sdk_env: SdkEnv, tmp_path: Path) -> None:
    user = sdk_env.deployment.user
    code = readme_sdk_example()
    assert 'user="alice"' in code and 'account="alice-lab"' in code
    code = code.replace('user="alice"', f'user="{user.name}"').replace(
        'account="alice-lab"', f'account="{sdk_env.account}"'
    )
    home = tmp_path / "home"
    save_identity(user, config_dir=home / ".config" / "jobsheet")
    work = tmp_path / "work"
    work.mkdir()
    (work / "numbers.txt").write_text("".join(f"{n % 7} {n}\n" for n in range(2000)))

    # The deployment's workers run on this event loop: the user's process runs beside it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=work,
        env=user_environment(sdk_env, home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 150)
    out = stdout.decode()
    assert proc.returncode == 0, out + stderr.decode()
    states = [line.split()[1] for line in out.splitlines() if line.startswith("state ")]
    assert states == ["submitted", "awaiting_upload", "running", "settling", "succeeded"]
    assert "succeeded charged" in out
    outputs = [Path(line) for line in out.splitlines() if line.startswith("outputs/")]
    assert outputs and all((work / path).is_file() for path in outputs)

    listed = await sdk_env.sdk.list_jobs(account=sdk_env.account)
    assert [(job.state, job.calculation) for job in listed] == [(JobState.SUCCEEDED, "text-stats")]
