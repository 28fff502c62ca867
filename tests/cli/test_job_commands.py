"""The job commands as subprocesses: --json output carries the right values, end to end."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from jobsheet.jobs.models import JobState
from tests.cli.conftest import CliEnv


async def test_submit_upload_run_watch_show_list_download(cli_env: CliEnv) -> None:
    data = b"lines of text\n" * 20_000
    (cli_env.cwd / "input.txt").write_bytes(data)
    account = cli_env.account

    submitted = await cli_env.run(
        "submit", "checksum", "input.txt", "--account", account, "--max-spend", "20.00", "--json"
    )
    assert submitted.code == 0, submitted.stderr
    job = submitted.json()
    uid = job["uid"]
    assert uid.startswith("job-")
    assert job["upload_url"].startswith("http://")
    assert (
        job["run_url"]
        == f"{cli_env.settings.api_url}/par/run/{uid}/" + job["run_url"].rsplit("/", 1)[1]
    )
    assert datetime.fromisoformat(job["expires_at"]) > datetime.now().astimezone()

    uploaded = await cli_env.run("upload", uid, "--json")
    assert uploaded.code == 0, uploaded.stderr
    assert uploaded.json() == {"uid": uid, "uploaded_bytes": len(data)}

    ran = await cli_env.run("run", uid, "--json")
    assert ran.code == 0, ran.stderr
    assert ran.json()["status"] == 202 and ran.json()["uid"] == uid

    watched = await cli_env.run("watch", uid, "--interval", "0.1", "--json")
    assert watched.code == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [e["state"] for e in events if e["kind"] == "state"] == [
        "submitted",
        "awaiting_upload",
        "running",
        "settling",
        "succeeded",
    ]

    shown = await cli_env.run("show", uid, "--json")
    assert shown.code == 0, shown.stderr
    sheet = shown.json()
    assert sheet["uid"] == uid and sheet["state"] == JobState.SUCCEEDED.value
    assert sheet["request"]["input_sha256"] == hashlib.sha256(data).hexdigest()
    assert job["run_url"].rsplit("/", 1)[1] not in shown.stdout

    listed = await cli_env.run("list", "--account", account, "--json")
    assert listed.code == 0, listed.stderr
    assert [(j["uid"], j["state"]) for j in listed.json()] == [(uid, "succeeded")]

    downloaded = await cli_env.run("download", uid, "--dir", "out", "--json")
    assert downloaded.code == 0, downloaded.stderr
    files = {path.rsplit("/", 1)[1]: path for path in downloaded.json()["files"]}
    checksum = (cli_env.cwd / files["sha256.txt"]).read_text().strip()
    assert checksum == hashlib.sha256(data).hexdigest()

    people = await cli_env.run("show", uid)
    assert people.code == 0 and "succeeded" in people.stdout
