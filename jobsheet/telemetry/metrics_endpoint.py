"""The HTTP server behind ``/metrics`` and ``/healthz``: one per process, on a daemon thread.

``/metrics`` is the Prometheus text format (0.0.4) of two parts: prometheus_client's registry
(jobsheet's own metrics and the Python process's) and, appended verbatim, the Temporal SDK's
own exposition, which the SDK's Rust core serves on a private 127.0.0.1 port. Appending keeps
the SDK's families byte for byte (no re-parsing of its histograms on every scrape); the two
never share a name (``jobsheet_``/``python_``/``process_`` against ``temporal_``).
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SDK_SCRAPE_TIMEOUT_SECONDS = 2.0

SDK_SCRAPE_FAILURES = Counter(
    "jobsheet_metrics_sdk_scrape_failures",
    "Scrapes of /metrics at which the Temporal SDK's exporter did not answer (its part was left "
    "out of that scrape).",
)

log = logging.getLogger("jobsheet.telemetry")


def sdk_exposition(url: str | None) -> bytes:
    """The Temporal SDK's metrics in the text format, or nothing if it does not answer."""
    if url is None:
        return b""
    try:
        with urllib.request.urlopen(url, timeout=SDK_SCRAPE_TIMEOUT_SECONDS) as response:
            body: bytes = response.read()
    except OSError as exc:
        SDK_SCRAPE_FAILURES.inc()
        log.warning("the Temporal SDK's metrics did not answer at %s: %s", url, exc)
        return b""
    return body if not body or body.endswith(b"\n") else body + b"\n"


class MetricsServer(ThreadingHTTPServer):
    """Serves ``/metrics`` (the registry, then the SDK's part from ``sdk_url``) and ``/healthz``."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        sdk_url: str | None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        super().__init__(address, _Handler)
        self.sdk_url = sdk_url
        self.registry = registry

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + sdk_exposition(self.sdk_url)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self, name: str) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(HTTPStatus.OK, self.server.exposition(), CONTENT_TYPE)
        elif path == "/healthz":
            self._answer(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._answer(HTTPStatus.NOT_FOUND, b"not found: try /metrics or /healthz\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _answer(
        self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds are not worth a log line each."""
