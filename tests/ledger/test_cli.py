"""``jobsheet user | account | cheque`` against the dev server and a ledger worker."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path

import pytest

from jobsheet.cheque import Cheque
from jobsheet.cli.app import run
from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_REFUSED
from jobsheet.identity import key_path, save_identity
from jobsheet.ledger import client as ledger
from tests.ledger.conftest import Ledger


@pytest.fixture
def cli_env(
    ledger_env: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Ledger, Path]:
    monkeypatch.setenv("JOBSHEET_TEMPORAL_ADDRESS", ledger_env.settings.temporal_target)
    monkeypatch.setenv("JOBSHEET_TEMPORAL_NAMESPACE", ledger_env.client.namespace)
    monkeypatch.setenv("JOBSHEET_TASK_QUEUE_LEDGER", ledger_env.task_queue)
    monkeypatch.setenv("JOBSHEET_CONFIG_DIR", str(tmp_path / "config"))
    # As on the local stack: the operator's key in the state dir, its name in the settings.
    monkeypatch.setenv("JOBSHEET_STATE_DIR", str(ledger_env.settings.state_dir))
    monkeypatch.setenv("JOBSHEET_OPERATOR_USER", ledger_env.operator.name)
    save_identity(ledger_env.operator, config_dir=ledger_env.settings.state_dir)
    return ledger_env, tmp_path / "config"


async def jobsheet(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(run, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def test_user_account_and_cheque_commands(
    cli_env: tuple[Ledger, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env, config_dir = cli_env
    name = f"carol-{uuid.uuid4().hex[:8]}"
    code, out, err = await jobsheet(capsys, "user", "create", name, "--json")
    assert code == 0, err
    created = json.loads(out)
    path = key_path(name, config_dir)
    assert Path(created["private_key_file"]) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    registered = await ledger.user_keys(env.client, name)
    assert [k.key_id for k in registered] == [created["key_id"]]

    code, out, err = await jobsheet(capsys, "account", "create", "--owner", name, "--json")
    assert code == 0, err
    account = json.loads(out)["account"]
    code, out, err = await jobsheet(capsys, "account", "deposit", account, "25.50", "--json")
    assert code == 0, err
    assert json.loads(out)["balance"] == "25.50"
    code, out, _ = await jobsheet(capsys, "account", "balance", account, "--json")
    assert json.loads(out)["available"] == "25.50"
    code, out, _ = await jobsheet(capsys, "account", "statement", account, "--json")
    assert [e["kind"] for e in json.loads(out)["entries"]] == ["deposit"]
    code, out, _ = await jobsheet(capsys, "account", "statement", account)
    assert code == 0 and "deposit" in out

    code, out, err = await jobsheet(
        capsys,
        "cheque", "write", "--user", name, "--account", account, "--recipient", "acct-shop",
        "--resource", "sha256:feed", "--max-spend", "12.00",
    )  # fmt: skip
    assert code == 0, err
    cheque = Cheque.model_validate_json(out)
    cheque.verify_signature(registered)
    assert (cheque.account, str(cheque.max_spend), cheque.drawer) == (account, "12.00", name)


async def test_cli_errors_are_one_line_with_meaningful_codes(
    cli_env: tuple[Ledger, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await jobsheet(capsys, "account", "balance", "acct-none")
    assert (code, err.count("\n")) == (EXIT_NOT_FOUND, 1)
    assert err.startswith("error: UnknownAccount")
    code, _, err = await jobsheet(capsys, "user", "create", "Bad Name")
    assert code == EXIT_BAD_INPUT
    code, _, err = await jobsheet(capsys, "account", "create", "--owner", "nobody-here")
    assert code == EXIT_NOT_FOUND
    name = f"dave-{uuid.uuid4().hex[:8]}"
    assert (await jobsheet(capsys, "user", "create", name))[0] == 0
    code, out, _ = await jobsheet(capsys, "account", "create", "--owner", name, "--json")
    account = json.loads(out)["account"]
    code, _, err = await jobsheet(capsys, "account", "deposit", account, "1.001")
    assert code == EXIT_BAD_INPUT, err
    code, _, err = await jobsheet(
        capsys, "account", "create", "--owner", name, "--account", account
    )
    assert code == EXIT_REFUSED and "AccountExists" in err
