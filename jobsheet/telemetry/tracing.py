"""OpenTelemetry traces through Temporal's tracing interceptor and the API."""

from __future__ import annotations

from temporalio.client import Interceptor

from jobsheet.settings import Settings


def start_tracing(settings: Settings, service_name: str) -> None:
    """Export this process's spans over OTLP when ``settings.otlp_endpoint`` is set."""


def client_interceptors() -> list[Interceptor]:
    """The interceptors every Temporal client (and the workers made from it) carries."""
    return []
