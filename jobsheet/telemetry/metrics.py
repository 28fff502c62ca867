"""Prometheus metrics: the Temporal SDK's and jobsheet's own, on one endpoint per process."""

from __future__ import annotations

from temporalio.runtime import Runtime

from jobsheet.settings import Settings


def start_metrics_endpoint(settings: Settings, process: str) -> None:
    """Serve ``/metrics`` and ``/healthz`` on ``settings.metrics_port`` (unset: nothing)."""


def process_runtime() -> Runtime | None:
    """The Temporal runtime whose metrics the endpoint serves (None: the SDK's default)."""
    return None
