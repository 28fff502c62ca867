"""One structured line per event."""

from __future__ import annotations

import logging

from jobsheet.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Set up the root logger for a worker or the API."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
