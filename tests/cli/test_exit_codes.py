"""What each kind of failure means to a script: the SDK error and the CLI exit code."""

from __future__ import annotations

import pytest

from jobsheet.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    CliError,
)
from jobsheet.cli.job_runtime import exit_code_for
from jobsheet.cli.submit_cmd import parse_params
from jobsheet.sdk import IntegrityError, RunRefused, Unavailable
from jobsheet.sdk.errors import BadInput, NotFound, Refused, from_rejection


@pytest.mark.parametrize(
    ("message", "kind", "code"),
    [
        ("UnknownCalculation: no calculation 'x'", BadInput, EXIT_BAD_INPUT),
        ("BadParameters: samples is required", BadInput, EXIT_BAD_INPUT),
        ("InsufficientFunds: acct-1 has 0.00 available", Refused, EXIT_REFUSED),
        ("OverMaxSpend: 12.10 is over the cheque's 5.00", Refused, EXIT_REFUSED),
        ("UnknownAccount: acct-9 does not exist", NotFound, EXIT_NOT_FOUND),
        ("the compute service is gone", Refused, EXIT_REFUSED),
    ],
)
def test_rejections(message: str, kind: type, code: int) -> None:
    error = from_rejection(message)
    assert isinstance(error, kind)
    assert exit_code_for(error) == code
    assert message.split(": ", 1)[-1] in error.message


@pytest.mark.parametrize(
    ("status", "code"), [(404, EXIT_NOT_FOUND), (409, EXIT_REFUSED), (410, EXIT_REFUSED)]
)
def test_run_refusals(status: int, code: int) -> None:
    assert exit_code_for(RunRefused("refused", status=status)) == code


def test_other_failures() -> None:
    assert exit_code_for(Unavailable("down")) == EXIT_UNAVAILABLE
    assert exit_code_for(IntegrityError("bad bytes")) == EXIT_FAILURE


def test_parameters() -> None:
    assert parse_params(["samples=1000", "name=pi", "ok=true"], '{"seed": 3}') == {
        "seed": 3,
        "samples": 1000,
        "name": "pi",
        "ok": True,
    }
    with pytest.raises(CliError):
        parse_params(["novalue"], None)
    with pytest.raises(CliError):
        parse_params([], "[1]")
