"""``python -m jobsheet.api``: serve the public API on settings.api_host:api_port."""

from __future__ import annotations

import logging

import uvicorn

from jobsheet.api.app import create_app
from jobsheet.core.settings import load_settings
from jobsheet.telemetry.logs import configure_logging
from jobsheet.telemetry.metrics import start_metrics_endpoint
from jobsheet.telemetry.redaction import RedactSecrets
from jobsheet.telemetry.tracing import start_tracing


def main() -> None:
    settings = load_settings()
    configure_logging(settings)
    start_metrics_endpoint(settings, process="api")
    start_tracing(settings, service_name="jobsheet-api")
    # log_config=None: uvicorn's loggers go through the root logger, one structured line each.
    config = uvicorn.Config(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None
    )
    # The access log's records carry the request path: PAR tokens are redacted before any
    # handler sees them (the root handler redacts every line as well).
    logging.getLogger("uvicorn.access").addFilter(RedactSecrets())
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
