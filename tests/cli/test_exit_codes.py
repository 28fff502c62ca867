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
from jobsheet.contracts.api import ApiError
from jobsheet.sdk import IntegrityError, RunRefused, Unavailable
from jobsheet.sdk.api_errors import error_for
from jobsheet.sdk.errors import BadInput, NotFound, Refused


@pytest.mark.parametrize(
    ("status", "error", "kind", "code"),
    [
        (422, "UnknownCalculation", BadInput, EXIT_BAD_INPUT),
        (422, "BadParameters", BadInput, EXIT_BAD_INPUT),
        (409, "InsufficientFunds", Refused, EXIT_REFUSED),
        (409, "OverMaxSpend", Refused, EXIT_REFUSED),
        (409, "UnknownAccount", NotFound, EXIT_NOT_FOUND),
        (410, "Expired", Refused, EXIT_REFUSED),
    ],
)
def test_refusals(status: int, error: str, kind: type, code: int) -> None:
    refusal = ApiError(error=error, message=f"{error} in words")
    found = error_for(status, refusal, what="submitting the job")
    assert isinstance(found, kind)
    assert exit_code_for(found) == code
    assert "in words" in found.message


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
