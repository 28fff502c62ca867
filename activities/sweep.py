"""The storage sweep's activity: act on every due clean-up marker (``jobsheet/jobs/cleanup.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings
from jobsheet.jobs import cleanup
from jobsheet.jobs.cleanup import SweepReport


class SweepActivities:
    def __init__(self, settings: Settings) -> None:
        self._bucket = settings.bucket
        self._s3 = internal_client(settings)

    @activity.defn
    def sweep_storage(self) -> SweepReport:
        """Do the due clean-ups (at most one batch; ``pending`` says when more are due)."""
        return cleanup.sweep(self._s3, self._bucket, datetime.now(UTC))
