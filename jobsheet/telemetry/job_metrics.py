"""jobsheet's own Prometheus metrics, and the one place each is moved from.

Each is moved where its event really happens, never in workflow code (a replay would count it
again): money where the ledger's lines reach the audit trail (``activities/ledger.py``), runs in
the compute activity (``activities/compute.py``), requests and PAR calls in the API's middleware
(``jobsheet/api/request_metrics.py``), jobs by state from Temporal's visibility at scrape time
(:mod:`jobsheet.telemetry.job_states`). Labels take values from small fixed sets (entry kinds,
run statuses, route templates, HTTP statuses, configured services and calculations), never a
job uid, an account, a user or a URL.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from threading import Lock

from prometheus_client import Counter, Gauge, Histogram

from jobsheet.ledger.models import EntryKind, LedgerEntry

CENTS = Decimal(100)
COUNTED_ENTRIES_KEPT = 100_000
"""Ledger lines remembered per process, so that an audit activity retried after it wrote its
lines (its completion lost) does not count them twice."""

RUN_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
WAIT_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

MONEY_HELD = Counter(
    "jobsheet_money_held_cents",
    "Money placed on hold by cashing cheques (credit notes issued), in cents.",
)
MONEY_CHARGED = Counter(
    "jobsheet_money_charged_cents",
    "Held money receipted: paid to the recipient for a job, in cents.",
)
MONEY_REFUNDED = Counter(
    "jobsheet_money_refunded_cents",
    "Held money returned to the payer, in cents, by reason: unused (the rest of a hold after "
    "its receipt), refund, auto_refund (nobody acted by receipt_by), void (a second cashing).",
    ["reason"],
)
REFUND_REASONS = ("unused", "refund", "auto_refund", "void")

RUN_DURATION = Histogram(
    "jobsheet_run_duration_seconds",
    "Wall time of a calculation's run, by compute service, calculation and outcome.",
    ["service", "calculation", "status"],
    buckets=RUN_SECONDS_BUCKETS,
)
RUN_QUEUE_WAIT = Histogram(
    "jobsheet_run_queue_wait_seconds",
    "From the run activity's scheduling to the grant of a run slot (task queue, contract check "
    "and waiting for one of the service's max_concurrent_runs), by compute service.",
    ["service"],
    buckets=WAIT_SECONDS_BUCKETS,
)
RUNS_IN_PROGRESS = Gauge(
    "jobsheet_runs_in_progress",
    "Runs that hold a run slot in this process, by compute service.",
    ["service"],
)

API_REQUEST_DURATION = Histogram(
    "jobsheet_api_request_duration_seconds",
    "Public API requests, by method, route template and HTTP status.",
    ["method", "route", "status"],
    buckets=REQUEST_SECONDS_BUCKETS,
)
PAR_CALLS = Counter(
    "jobsheet_par_calls",
    "Calls to the PAR routes the API answers (run PAR, bucket-write PAR), by route template and "
    "HTTP status.",
    ["route", "status"],
)


class _CountedLines:
    """The ledger lines this process has counted (most recent ``kept``)."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = Lock()

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > self._kept:
                self._seen.popitem(last=False)
            return True


_counted = _CountedLines(COUNTED_ENTRIES_KEPT)


def _cents(amount: Decimal) -> int:
    return int(amount * CENTS)


def refund_reason(entry: LedgerEntry) -> str | None:
    """Why a line returned held money to its payer, or None for a line that did not."""
    if entry.kind is EntryKind.RELEASE:
        return "unused"
    if entry.kind is EntryKind.AUTO_REFUND:
        return "auto_refund"
    if entry.kind is EntryKind.REFUND:
        # A voided cashing's line carries the cashing's key behind "void-" (ledger/state.py).
        return "void" if entry.idempotency_key.startswith("void-") else "refund"
    return None


def count_ledger_entries(entries: Iterable[LedgerEntry]) -> None:
    """Count the money lines just written to the audit trail (each line once per process)."""
    for entry in entries:
        if not _counted.first_time(entry.object_key):
            continue
        cents = _cents(entry.amount)
        if entry.kind is EntryKind.HOLD:
            MONEY_HELD.inc(cents)
        elif entry.kind is EntryKind.RECEIPT:
            MONEY_CHARGED.inc(cents)
        elif (reason := refund_reason(entry)) is not None:
            MONEY_REFUNDED.labels(reason=reason).inc(cents)


def observe_queue_wait(service: str, scheduled: datetime) -> None:
    """A run got its slot now; its activity attempt was scheduled at ``scheduled``."""
    waited = (datetime.now(UTC) - scheduled).total_seconds()
    RUN_QUEUE_WAIT.labels(service=service).observe(max(0.0, waited))


def observe_run(service: str, calculation: str, status: str, wall_seconds: float) -> None:
    """A calculation ran for ``wall_seconds`` and ended as ``status`` (a RunStatus value)."""
    RUN_DURATION.labels(service=service, calculation=calculation, status=status).observe(
        wall_seconds
    )


def run_in_progress(service: str) -> AbstractContextManager[object]:
    """Count a run as in progress while the block runs."""
    return RUNS_IN_PROGRESS.labels(service=service).track_inprogress()


def declare_label_values() -> None:
    """Export every refund reason at zero from the start, so that rates and sums over them
    exist before the first refund of each kind."""
    for reason in REFUND_REASONS:
        MONEY_REFUNDED.labels(reason=reason)
