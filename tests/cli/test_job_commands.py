"""The job commands as subprocesses: --json output carries the right values, end to end."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND
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
    assert job["held"] == "3.05"  # checksum's quote
    assert job["next"] == [f"jobsheet upload {uid}", f"jobsheet run {uid}"]

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


async def test_a_job_for_people(cli_env: CliEnv) -> None:
    """The same commands without --json, piped as a script would read them: a calculation that
    reads no input needs none, every line is whole, and the outputs are never overwritten
    without --force."""
    narrow = {"COLUMNS": "80"}
    pay = ("--account", cli_env.account, "--max-spend", "20.00")

    submitted = await cli_env.run("submit", "monte-carlo-pi", *pay, "-p", "samples=1000")
    assert submitted.code == 0, submitted.stderr
    paid = re.search(r"job (job-[0-9a-f]{32}) is paid for: held 12\.10 from ", submitted.stdout)
    assert paid is not None, submitted.stdout
    uid = paid.group(1)
    # No input to upload: the empty one went with the submission, so the run is next.
    assert "uploaded 0 bytes" in submitted.stdout
    assert submitted.stdout.rstrip().endswith(f"next:\n  jobsheet run {uid}")
    assert "run URL:    http://" in submitted.stdout

    pending = await cli_env.run("show", uid, env=narrow)
    assert pending.code == 0 and "run by" in pending.stdout

    ran = await cli_env.run("run", uid)
    assert ran.code == 0, ran.stderr
    assert f"job {uid}: the run starts (HTTP 202)" in ran.stdout

    watched = await cli_env.run("watch", uid, "--interval", "0.1", env=narrow)
    assert watched.code == 0, watched.stderr
    assert watched.stderr == ""
    states = [line.split()[1] for line in watched.stdout.splitlines() if line.strip()]
    assert states == ["submitted", "awaiting_upload", "running", "settling", "succeeded"]

    shown = await cli_env.run("show", uid, env=narrow)
    assert shown.code == 0, shown.stderr
    assert '"samples": 1000' in shown.stdout  # JSON, not a Python dict
    assert "run by" not in shown.stdout  # the deadline no longer matters
    assert "pi.json" in shown.stdout

    listed = await cli_env.run("list", "--account", cli_env.account, env=narrow)
    assert listed.code == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if uid in line)
    assert "succeeded" in row and "monte-carlo-pi" in row

    downloaded = await cli_env.run("download", uid, "--dir", "out")
    assert downloaded.code == 0, downloaded.stderr
    assert "out/files/pi.json (checked)" in downloaded.stdout.splitlines()
    assert json.loads((cli_env.cwd / "out" / "files" / "pi.json").read_text())

    again = await cli_env.run("download", uid, "--dir", "out")
    assert again.code == EXIT_BAD_INPUT
    assert "out/files/pi.json" in again.error_line() and "--force" in again.error_line()
    forced = await cli_env.run("download", uid, "--dir", "out", "--force", "--json")
    assert forced.code == 0, forced.stderr
    assert "out/files/pi.json" in forced.json()["files"]


async def test_inputs_where_a_calculation_reads_one(cli_env: CliEnv) -> None:
    (cli_env.cwd / "input.txt").write_bytes(b"words and words\n")
    pay = ("--account", cli_env.account, "--max-spend", "20.00")

    needs_input = await cli_env.run("submit", "checksum", *pay)
    assert needs_input.code == EXIT_BAD_INPUT
    assert "checksum reads an input file" in needs_input.error_line()
    no_input = await cli_env.run("submit", "monte-carlo-pi", "input.txt", *pay, "-p", "samples=9")
    assert no_input.code == EXIT_BAD_INPUT
    assert "monte-carlo-pi reads no input: leave out input.txt" in no_input.error_line()

    typo = await cli_env.run("submit", "chcksum", "input.txt", *pay)
    assert typo.code == EXIT_BAD_INPUT
    line = typo.error_line()
    assert "no calculation 'chcksum'; did you mean checksum?" in line
    assert "checksum, monte-carlo-pi, text-stats" in line

    # Submitted, uploaded later, then cancelled: for people.
    paid = await cli_env.run("submit", "checksum", "input.txt", *pay)
    assert paid.code == 0, paid.stderr
    uid = paid.stdout.split()[1]
    assert paid.stdout.rstrip().endswith(f"next:\n  jobsheet upload {uid}\n  jobsheet run {uid}")
    assert "held 3.05 from " in paid.stdout and "run it by " in paid.stdout
    uploaded = await cli_env.run("upload", uid)
    assert uploaded.code == 0 and f"uploaded 16 bytes for job {uid}" in uploaded.stdout
    cancelled = await cli_env.run("cancel", uid)
    assert cancelled.code == 0, cancelled.stderr
    assert f"job {uid} is cancelled; charged 0.00, refunded " in cancelled.stdout

    # Upload and run at once: the next command is watch, as this user.
    user = cli_env.deployment.user.name
    started = await cli_env.run(
        "submit", "text-stats", "input.txt", *pay, "--run", "--user", user, "--json"
    )
    assert started.code == 0, started.stderr
    job = started.json()
    assert job["uploaded_bytes"] == 16 and job["run"]["status"] == 202
    assert job["next"] == [f"jobsheet watch {job['uid']} --user {user}"]


async def test_no_account_of_yours(cli_env: CliEnv) -> None:
    (cli_env.cwd / "input.txt").write_bytes(b"x\n")
    missing = await cli_env.run(
        "submit", "checksum", "input.txt", "--account", "nosuch-acct", "--max-spend", "5.00"
    )
    assert missing.code == EXIT_NOT_FOUND
    line = missing.error_line()
    assert "no account nosuch-acct of yours" in line
    assert "account-nosuch-acct" not in line
