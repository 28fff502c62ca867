"""``jobsheet_jobs{state}``: job sheets per state, counted by Temporal's visibility at scrape time.

Each job sheet workflow upserts its state as the JobState search attribute at every change
(workflows/job_sheet/state.py), so visibility can count the jobs in each state without any
workflow code emitting a metric. The jobs role asks when Prometheus scrapes (at most once per
``max_age`` seconds; one count per state, since visibility groups only by ExecutionStatus) on
the worker's own event loop and client. Jobs in a terminal state are counted as long as the
namespace's retention keeps their closed workflows. Several jobs workers export the same
numbers: take ``max by (state)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from temporalio.client import Client

from jobsheet.core.settings import Settings
from jobsheet.jobs.listing import visibility_query
from jobsheet.jobs.models import JobState

NAME = "jobsheet_jobs"
HELP = "Job sheets in each state, as Temporal's visibility counts them (JobState search attribute)."
MAX_AGE_SECONDS = 5.0
COUNT_TIMEOUT_SECONDS = 3.0

COUNT_FAILURES = Counter(
    "jobsheet_job_state_count_failures",
    "Scrapes at which Temporal's visibility did not count the jobs in time (the last counts "
    "are exported again).",
)

log = logging.getLogger("jobsheet.telemetry")


class JobStateCollector(Collector):
    """Counts job sheets per state through ``client`` on ``loop`` when collected."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        *,
        max_age: float = MAX_AGE_SECONDS,
    ) -> None:
        self._client, self._settings, self._loop = client, settings, loop
        self._max_age = max_age
        self._counts: dict[JobState, int] = {}
        self._counted_at = float("-inf")

    async def count(self) -> dict[JobState, int]:
        """The number of job sheets in each state now."""

        async def one(state: JobState) -> int:
            query = visibility_query(self._settings, state=state)
            return (await self._client.count_workflows(query)).count

        counts = await asyncio.gather(*(one(state) for state in JobState))
        return dict(zip(JobState, counts, strict=True))

    def _refresh(self) -> None:
        if time.monotonic() - self._counted_at < self._max_age:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self.count(), self._loop)
        except RuntimeError as exc:  # the worker's loop is closed: it is shutting down
            log.info("jobs by state not counted: %s", exc)
            return
        try:
            self._counts = future.result(timeout=COUNT_TIMEOUT_SECONDS)
            self._counted_at = time.monotonic()
        except Exception as exc:
            future.cancel()
            COUNT_FAILURES.inc()
            log.warning("could not count jobs by state: %s", exc or type(exc).__name__)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(NAME, HELP, labels=["state"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self._refresh()
        family = GaugeMetricFamily(NAME, HELP, labels=["state"])
        for state, count in self._counts.items():
            family.add_metric([state.value], count)
        yield family


_registered: JobStateCollector | None = None


def watch_job_states(client: Client, settings: Settings) -> None:
    """Export ``jobsheet_jobs{state}`` from this process (the jobs role; call it on the worker's
    event loop, once the metrics endpoint started). Nothing without an endpoint."""
    global _registered
    if settings.metrics_port is None or _registered is not None:
        return
    _registered = JobStateCollector(client, settings, asyncio.get_running_loop())
    REGISTRY.register(_registered)
