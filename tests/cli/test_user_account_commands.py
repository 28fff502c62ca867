"""``jobsheet user | account | calculations`` through the public API, as subprocesses."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_UNAVAILABLE
from jobsheet.identity.keys import key_path
from jobsheet.ledger.cheque import Cheque
from tests.cli.conftest import CliEnv


async def test_user_and_account_commands(cli_env: CliEnv, tmp_path: Path) -> None:
    config = cli_env.settings.config_dir
    assert config is not None
    name = f"carol-{uuid.uuid4().hex[:8]}"
    as_carol = {"JOBSHEET_USER": name}

    created = await cli_env.run("user", "create", name, "--json")
    assert created.code == 0, created.stderr
    path = key_path(name, config)
    assert Path(created.json()["private_key_file"]) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first_key = created.json()["key_id"]
    listed = await cli_env.run("user", "keys", name, "--json")
    assert [k["key_id"] for k in listed.json()["keys"]] == [first_key]
    people_keys = await cli_env.run("user", "keys", name)
    assert people_keys.code == 0 and first_key in people_keys.stdout

    opened = await cli_env.run("account", "create", "--json", env=as_carol)
    assert opened.code == 0, opened.stderr
    account = opened.json()["account"]
    assert opened.json()["owner"] == name

    operator = cli_env.as_operator(tmp_path / "operator-config")
    once = ("account", "deposit", account, "25.50", "--idempotency-key", "dep-1", "--json")
    deposited = await cli_env.run(*once, env=operator)
    assert deposited.code == 0, deposited.stderr
    assert deposited.json()["balance"] == "25.50"
    again = await cli_env.run(*once, env=operator)
    assert again.code == 0 and again.json()["balance"] == "25.50"

    balance = await cli_env.run("account", "balance", account, "--json", env=as_carol)
    assert balance.code == 0, balance.stderr
    assert balance.json()["available"] == "25.50"
    statement = await cli_env.run("account", "statement", account, "--json", env=as_carol)
    assert [line["entry"]["kind"] for line in statement.json()["lines"]] == ["deposit"]
    people = await cli_env.run("account", "statement", account, env=as_carol)
    assert people.code == 0 and "deposit" in people.stdout

    # The same commands for people.
    dave = f"dave-{uuid.uuid4().hex[:8]}"
    signed_up = await cli_env.run("user", "create", dave)
    assert signed_up.code == 0, signed_up.stderr
    assert f"user {dave} registered with key " in signed_up.stdout
    assert f"private key: {key_path(dave, config)} (mode 0600)" in signed_up.stdout
    as_dave = {"JOBSHEET_USER": dave}
    dave_lab = f"dave-lab-{uuid.uuid4().hex[:6]}"
    made = await cli_env.run("account", "create", "--account", dave_lab, env=as_dave)
    assert made.code == 0 and f"opened account {dave_lab} for {dave}" in made.stdout
    paid_in = await cli_env.run("account", "deposit", dave_lab, "7.00", env=operator)
    assert paid_in.code == 0 and "7.00" in paid_in.stdout
    read = await cli_env.run("account", "balance", dave_lab, env=as_dave)
    assert read.code == 0 and dave_lab in read.stdout and "7.00" in read.stdout

    # Another user sees nothing of carol's account.
    theirs = await cli_env.run("account", "balance", account)
    assert theirs.code == EXIT_NOT_FOUND, theirs.stderr
    taken = await cli_env.run("account", "create", "--account", account)
    assert taken.code == EXIT_REFUSED and "AccountExists" in taken.error_line()

    cheque = await cli_env.run(
        "cheque", "write", "--user", name, "--account", account, "--recipient", "acct-shop",
        "--resource", "sha256:feed", "--max-spend", "12.00",
    )  # fmt: skip
    assert cheque.code == 0, cheque.stderr
    written = Cheque.model_validate_json(cheque.stdout)
    assert (written.account, str(written.max_spend), written.drawer) == (account, "12.00", name)

    rotated = await cli_env.run("user", "rotate", name, "--json")
    assert rotated.code == 0, rotated.stderr
    keys = {k["key_id"]: k for k in rotated.json()["keys"]}
    assert len(keys) == 2 and keys[first_key]["valid_until"] is not None
    # The new key signs from now on.
    assert (await cli_env.run("account", "balance", account, "--json", env=as_carol)).code == 0
    revoked = await cli_env.run("user", "revoke", name, first_key, "--json")
    assert revoked.code == 0, revoked.stderr
    assert revoked.json()["keys"][0]["revoked_at"] is not None

    # The same for people: a table of key ids and their periods.
    rotated_again = await cli_env.run("user", "rotate", name)
    assert rotated_again.code == 0, rotated_again.stderr
    assert first_key in rotated_again.stdout and "revoked at" in rotated_again.stdout
    newest = (await cli_env.run("user", "keys", name, "--json")).json()["keys"][-1]["key_id"]
    second = next(k for k in keys if k != first_key)
    revoked_again = await cli_env.run("user", "revoke", name, second)
    assert revoked_again.code == 0, revoked_again.stderr
    assert second in revoked_again.stdout and newest not in revoked_again.stdout
    shown = await cli_env.run("user", "keys", name)
    assert shown.code == 0 and all(k in shown.stdout for k in (first_key, second, newest))


async def test_account_refusals(cli_env: CliEnv, tmp_path: Path) -> None:
    missing = await cli_env.run("account", "balance", "acct-none")
    assert missing.code == EXIT_NOT_FOUND
    assert "acct-none does not exist" in missing.error_line()
    bad_name = await cli_env.run("user", "create", "Bad Name")
    assert bad_name.code == EXIT_BAD_INPUT, bad_name.stderr

    account = cli_env.account
    no_key = await cli_env.run("account", "deposit", account, "1.00")
    assert no_key.code == EXIT_BAD_INPUT
    assert "no key for the operator" in no_key.error_line()
    # A user's key is not the operator's, whatever the user's settings say.
    pretender = await cli_env.run(
        "account", "deposit", account, "1.00",
        env={"JOBSHEET_OPERATOR_USER": cli_env.deployment.user.name},
    )  # fmt: skip
    assert pretender.code == EXIT_REFUSED, pretender.stderr
    operator = cli_env.as_operator(tmp_path / "operator-config")
    cents = await cli_env.run("account", "deposit", account, "1.001", env=operator)
    assert cents.code == EXIT_BAD_INPUT, cents.stderr

    down = await cli_env.run(
        "account", "balance", account, env={"JOBSHEET_API_URL": "http://127.0.0.1:1"}
    )
    assert down.code == EXIT_UNAVAILABLE
    assert "could not be reached" in down.error_line()


async def test_calculations(cli_env: CliEnv) -> None:
    listed = await cli_env.run("calculations", "--json")
    assert listed.code == 0, listed.stderr
    assert listed.json()["payee"] == cli_env.deployment.provider
    by_name = {calc["name"]: calc for calc in listed.json()["calculations"]}
    assert {"checksum", "text-stats"} <= set(by_name)
    assert float(by_name["checksum"]["quote"]) > 0
    assert by_name["checksum"]["reads_input"] and not by_name["monte-carlo-pi"]["reads_input"]
    people = await cli_env.run("calculations", env={"COLUMNS": "80"})
    assert people.code == 0, people.stderr
    rows = {line.split()[1]: line for line in people.stdout.splitlines() if "│" in line[:2]}
    assert "top (integer) = 20" in rows["text-stats"] and "3.05" in rows["text-stats"]
    pi = rows["monte-carlo-pi"]
    assert "seed (integer) = 1, samples* (integer)" in pi and "12.10" in pi and "none" in pi
