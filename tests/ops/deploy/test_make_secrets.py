"""deploy/make-secrets writes every secret compose mounts, once, in forms the services accept."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from jobsheet.core.payload_codec import PayloadKeyRing
from jobsheet.ledger.orders import ledger_signer
from tests.ops.deploy.compose_file import ROOT, load

SCRIPT = ROOT / "deploy" / "make-secrets"


def make_secrets(directory: Path) -> str:
    result = subprocess.run(
        ["sh", str(SCRIPT), str(directory)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_writes_every_secret_compose_mounts_private_on_the_host(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    make_secrets(directory)
    assert {path.name for path in directory.iterdir()} == set(load()["secrets"])
    # The directory keeps them from other users of the host; the files are readable by the
    # container users compose mounts them for.
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
        value = path.read_text()
        assert value and value == value.strip(), f"{path.name}: no newline, no blanks"
    # The forms the services parse.
    PayloadKeyRing.parse((directory / "jobsheet_payload_keys").read_text())
    ledger_signer((directory / "jobsheet_ledger_key").read_text())
    assert len((directory / "jobsheet_par_secret").read_text()) >= 64
    assert (directory / "jobsheet_s3_access_key").read_text() != (
        directory / "minio_root_user"
    ).read_text()


def test_is_idempotent_and_never_overwrites_a_secret(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "postgres_password").write_text("the operator's own")
    first = make_secrets(directory)
    assert "kept" in first and "postgres_password" in first
    before = {path.name: path.read_text() for path in directory.iterdir()}
    second = make_secrets(directory)
    assert "generated" not in second
    assert {path.name: path.read_text() for path in directory.iterdir()} == before
    assert before["postgres_password"] == "the operator's own"
    # Two runs into two directories never produce the same secrets.
    other = tmp_path / "other"
    make_secrets(other)
    assert (other / "jobsheet_par_secret").read_text() != before["jobsheet_par_secret"]


def test_secrets_stay_out_of_git_and_of_the_image() -> None:
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"deploy/secrets", ".env"} <= set(ignored)
