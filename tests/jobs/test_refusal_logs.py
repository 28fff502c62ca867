"""A user's refusal is one INFO line naming the job and the reason, never a WARNING traceback."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from temporalio.client import WorkflowUpdateFailedError

from jobsheet.jobs.models import JobState
from jobsheet.telemetry.logs import JsonLines
from tests.jobs.conftest import Deployment


async def test_a_refused_submission_logs_one_info_line_and_no_traceback(
    deployed: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="temporalio")
    caplog.set_level(logging.INFO, logger="jobsheet")
    with pytest.raises(WorkflowUpdateFailedError):
        await deployed.submit(deployed.request(b"x", "no-such-calculation"))
    uid = deployed.submitted[-1]
    await deployed.wait_for(uid, JobState.REJECTED)

    refusals = [r for r in caplog.records if r.name == "jobsheet.refusals"]
    assert [(r.levelno, r.__dict__.get("job"), r.__dict__.get("reason")) for r in refusals] == [
        (logging.INFO, uid, "UnknownCalculation")
    ]
    assert refusals[0].exc_info is None
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage() for r in loud]

    line = JsonLines().format(refusals[0])
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["level"] == "INFO" and fields["job"] == uid
    assert fields["reason"] == "UnknownCalculation" and "exc" not in fields


def test_a_traceback_stays_on_its_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    line = JsonLines().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "failed x"
    assert "ValueError: boom" in fields["exc"]
