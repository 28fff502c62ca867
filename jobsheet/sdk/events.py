"""What :meth:`jobsheet.sdk.Job.watch` yields: the API's watch event, with the sheet it saw."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from jobsheet.contracts.api import WatchEvent
from jobsheet.jobs.models import JobSheet


class JobEvent(WatchEvent):
    """A change of a job: a state it entered (``kind="state"``) or run progress (``"progress"``)."""

    sheet: JobSheet = Field(exclude=True, repr=False)
    """The sheet as it was read when the change was seen."""

    @property
    def terminal(self) -> bool:
        return self.kind == "state" and self.state.terminal

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
