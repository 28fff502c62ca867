"""Usage errors, help and the version, run in-process: nothing here reaches a server."""

from __future__ import annotations

import pytest

import jobsheet
from jobsheet.cli.app import run
from jobsheet.cli.errors import EXIT_BAD_INPUT, EXIT_OK


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["submit", "checksum", "in.txt", "--account", "a"], "missing option '--max-spend'"),
        (["submit", "checksum", "in.txt", "--max-spend", "1"], "missing option '--account'"),
        (["submit"], "missing argument 'CALCULATION'"),
        (["account", "statement", "a", "-n", "x"], "invalid value for '--limit' / '-n'"),
        (["list", "--bogus"], "no such option: --bogus"),
        (["nosuch"], "no such command 'nosuch'"),
        (["cheque", "write", "--user", "u"], "missing option '--account'"),
    ],
)
def test_usage_errors_exit_2_and_name_the_flag(
    args: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(args) == EXIT_BAD_INPUT
    line = error_line(capsys)
    assert names in line
    assert "--help`)" in line


def test_bare_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == EXIT_OK
    out = capsys.readouterr()
    assert "Usage: jobsheet" in out.out and "calculations" in out.out
    assert "error" not in out.err
    assert run(["stack"]) == EXIT_OK
    assert "Usage: jobsheet stack" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == EXIT_OK
    assert capsys.readouterr().out == f"jobsheet {jobsheet.__version__}\n"
