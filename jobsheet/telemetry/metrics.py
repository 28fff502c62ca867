"""Prometheus metrics: the Temporal SDK's and jobsheet's own, on one endpoint per process.

``start_metrics_endpoint`` (a worker's ``serve()``, the API's ``main()``) creates the process's
one Temporal :class:`Runtime`, whose Prometheus exporter listens on a private 127.0.0.1 port,
and serves ``http://metrics_host:metrics_port/metrics`` with jobsheet's metrics followed by the
SDK's (see :mod:`jobsheet.telemetry.metrics_endpoint`), and ``/healthz``. Every Temporal client
:func:`jobsheet.core.temporal.connect` makes afterwards uses that runtime
(:func:`process_runtime`); without an endpoint (tests, the CLI) it returns None and the SDK
keeps its default runtime, which exports nothing.

The SDK's metrics keep their default names and units (counters without ``_total``, durations in
milliseconds), as Temporal's published SDK dashboards expect them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import Info, disable_created_metrics
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from jobsheet.core import processes
from jobsheet.core.settings import Settings
from jobsheet.telemetry.job_metrics import declare_label_values
from jobsheet.telemetry.metrics_endpoint import MetricsServer
from jobsheet.version import __version__

SDK_BIND_ATTEMPTS = 5

BUILD = Info("jobsheet_build", "The jobsheet version and process role this endpoint reports.")

log = logging.getLogger("jobsheet.telemetry")


@dataclass
class _Endpoint:
    process: str
    runtime: Runtime
    server: MetricsServer
    url: str


_endpoint: _Endpoint | None = None


def start_metrics_endpoint(settings: Settings, process: str) -> None:
    """Serve ``/metrics`` and ``/healthz`` on ``settings.metrics_port`` (unset: nothing).

    Call it once, before the first Temporal client connects; a second call does nothing.
    """
    global _endpoint
    if settings.metrics_port is None or _endpoint is not None:
        return
    disable_created_metrics()  # no ``*_created`` series beside every counter and histogram
    declare_label_values()
    BUILD.info({"version": __version__, "process": process})
    runtime, sdk_url = _sdk_runtime()
    server = MetricsServer((settings.metrics_host, settings.metrics_port), sdk_url=sdk_url)
    server.start(name=f"metrics-{server.port}")
    url = f"http://{settings.metrics_host}:{server.port}/metrics"
    _endpoint = _Endpoint(process=process, runtime=runtime, server=server, url=url)
    log.info("metrics for %s at %s", process, _endpoint.url)


def _sdk_runtime() -> tuple[Runtime, str]:
    """A runtime whose SDK metrics are served on a free private port, and their URL."""
    for attempt in range(SDK_BIND_ATTEMPTS):
        address = f"127.0.0.1:{processes.free_port()}"
        try:
            config = PrometheusConfig(bind_address=address)
            return Runtime(telemetry=TelemetryConfig(metrics=config)), f"http://{address}/metrics"
        except Exception:  # the port was taken meanwhile
            if attempt == SDK_BIND_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def process_runtime() -> Runtime | None:
    """The Temporal runtime whose metrics the endpoint serves (None: the SDK's default)."""
    return _endpoint.runtime if _endpoint is not None else None
