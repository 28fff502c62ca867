"""Connect to Temporal with the pydantic data converter, from settings; exit safely after."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from jobsheet.settings import Settings


async def connect(settings: Settings) -> Client:
    """A Temporal client for ``settings``, converting pydantic models on every boundary."""
    config = settings.temporal_connect_config()
    return await Client.connect(data_converter=pydantic_data_converter, **config)


def exit_without_teardown(code: int) -> NoReturn:
    """Flush stdout and stderr, then leave with ``os._exit(code)``.

    temporalio's native threads can abort the interpreter while it finalises (sdk-python#300,
    "PyGILState_Release", status 134), so a program that used a client or worker exits with its
    own status this way instead of through interpreter teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
