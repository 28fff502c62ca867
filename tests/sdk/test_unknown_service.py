"""An unknown service or calculation, through the API as a user meets it: refused at once,
naming what exists (it used to wait two minutes for a compute queue nobody polls)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobsheet.sdk.errors import BadInput
from tests.sdk.conftest import SdkEnv


@pytest.mark.parametrize(
    ("calculation", "service", "reason", "named"),
    [
        ("checksum", "nosuch", "UnknownService", "known services: science, standard"),
        ("nosuch", "standard", "UnknownCalculation", "checksum, monte-carlo-pi, text-stats"),
    ],
    ids=["service", "calculation"],
)
async def test_an_unknown_service_or_calculation_is_refused_at_once(
    sdk_env: SdkEnv, tmp_path: Path, calculation: str, service: str, reason: str, named: str
) -> None:
    data = tmp_path / "input.txt"
    data.write_bytes(b"1\n2\n3\n")
    started = time.monotonic()
    with pytest.raises(BadInput) as caught:
        await sdk_env.sdk.submit(
            calculation, {}, data, account=sdk_env.account, max_spend="5.00", service=service
        )
    elapsed = time.monotonic() - started
    assert caught.value.reason == reason
    assert named in str(caught.value)
    assert elapsed < 2.0, f"refused after {elapsed:.2f}s"
