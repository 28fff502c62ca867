"""Search attributes that make job sheets findable in the Temporal Web UI and visibility API."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

JOB_STATE = SearchAttributeKey.for_keyword("JobState")
JOB_ACCOUNT = SearchAttributeKey.for_keyword("JobAccount")
JOB_USER = SearchAttributeKey.for_keyword("JobUser")
JOB_CALCULATION = SearchAttributeKey.for_keyword("JobCalculation")

ALL: tuple[SearchAttributeKey[str], ...] = (JOB_STATE, JOB_ACCOUNT, JOB_USER, JOB_CALCULATION)


def cli_flags() -> list[str]:
    """``--search-attribute NAME=Keyword`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags
