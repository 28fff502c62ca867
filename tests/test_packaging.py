"""The first install prints no setuptools warning: the license is an SPDX expression, which
setuptools reads from version 77 on (a TOML table printed a deprecation warning three times)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_an_spdx_expression_setuptools_reads() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
    classifiers = pyproject["project"].get("classifiers", [])
    assert not [c for c in classifiers if c.startswith("License ::")]  # refused beside an SPDX one
