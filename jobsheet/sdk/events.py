"""What :meth:`jobsheet.sdk.Job.watch` yields: one event per new timeline entry or progress step."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from jobsheet.compute.models import RunProgress
from jobsheet.jobs.models import JobSheet, JobState


class JobEvent(BaseModel):
    """A change of a job: a state it entered (``kind="state"``) or run progress (``"progress"``)."""

    kind: Literal["state", "progress"]
    uid: str
    state: JobState
    at: datetime | None = None
    note: str = ""
    progress: RunProgress | None = None
    sheet: JobSheet = Field(exclude=True, repr=False)
    """The sheet as it was read when the change was seen."""

    @property
    def terminal(self) -> bool:
        return self.kind == "state" and self.state.terminal

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
