"""Bad input and refusals: a non-zero exit that means something and one readable line."""

from __future__ import annotations

from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_REFUSED
from jobsheet.jobs.models import JobState
from tests.cli.conftest import CliEnv


async def test_bad_input_and_refusals(cli_env: CliEnv) -> None:
    (cli_env.cwd / "input.txt").write_bytes(b"some input\n")
    account = cli_env.account
    pay = ("--account", account, "--max-spend", "20.00")

    missing = await cli_env.run("submit", "checksum", "nope.txt", *pay)
    assert missing.code == EXIT_BAD_INPUT
    assert "nope.txt does not exist" in missing.error_line()

    unknown = await cli_env.run("submit", "no-such-calculation", "input.txt", *pay)
    assert unknown.code == EXIT_BAD_INPUT
    assert "no-such-calculation" in unknown.error_line()

    bad_param = await cli_env.run("submit", "checksum", "input.txt", *pay, "--param", "x")
    assert bad_param.code == EXIT_BAD_INPUT
    assert "NAME=VALUE" in bad_param.error_line()

    ghost = await cli_env.run("submit", "checksum", "input.txt", *pay, "--user", "ghost")
    assert ghost.code == EXIT_BAD_INPUT
    assert "no key for user 'ghost'" in ghost.error_line()

    bogus = await cli_env.run("list", "--state", "bogus")
    assert bogus.code == EXIT_BAD_INPUT
    assert "unknown state 'bogus'" in bogus.error_line()

    opened = await cli_env.run("account", "create", "--json")
    assert opened.code == 0, opened.stderr
    empty = opened.json()["account"]
    broke = await cli_env.run(
        "submit", "checksum", "input.txt", "--account", empty, "--max-spend", "20.00"
    )
    assert broke.code == EXIT_REFUSED
    assert "InsufficientFunds" in broke.error_line()

    nobody = await cli_env.run("show", "job-" + "0" * 32)
    assert nobody.code == EXIT_NOT_FOUND
    assert "does not exist" in nobody.error_line()

    # A good job, cancelled by its owner: everything is undone.
    submitted = await cli_env.run("submit", "checksum", "input.txt", *pay, "--json")
    uid = submitted.json()["uid"]
    cancelled = await cli_env.run("cancel", uid, "--reason", "not needed", "--json")
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.json()["state"] == JobState.CANCELLED.value
    again = await cli_env.run("cancel", uid, "--json")
    assert again.code == 0 and again.json()["state"] == JobState.CANCELLED.value
    unknown_job = await cli_env.run("cancel", "job-" + "0" * 32)
    assert unknown_job.code == EXIT_NOT_FOUND


async def test_expired_run_par(short_expiry_cli: CliEnv) -> None:
    env = short_expiry_cli
    (env.cwd / "input.txt").write_bytes(b"too late\n")
    submitted = await env.run(
        "submit", "checksum", "input.txt", "--account", env.account, "--max-spend", "5.00",
        "--upload", "--json",
    )  # fmt: skip
    assert submitted.code == 0, submitted.stderr
    job = submitted.json()
    await env.deployment.wait_for(job["uid"], JobState.EXPIRED)

    by_uid = await env.run("run", job["uid"])
    assert by_uid.code == EXIT_REFUSED
    assert "410" in by_uid.error_line() and "expired" in by_uid.error_line()
    by_url = await env.run("run", job["run_url"], "--json")
    assert by_url.code == EXIT_REFUSED
    assert "expired" in by_url.error_line()

    # Nothing ran, so nothing to download: the job expired, it is not missing.
    download = await env.run("download", job["uid"])
    assert download.code == EXIT_REFUSED
    line = download.error_line()
    assert f"job {job['uid']} expired at " in line and "it has no outputs" in line
    assert (await env.run("download", job["uid"], "--json")).code == EXIT_REFUSED
