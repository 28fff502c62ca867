"""Run the public API for a test: uvicorn on a free 127.0.0.1 port in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import APIRouter

from jobsheet.api import create_app
from jobsheet.api.temporal_clients import Connect
from jobsheet.core import processes
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import connect


@dataclass
class ApiServer:
    """A running API; ``settings`` are the input settings with the API's URL filled in."""

    port: int
    server: uvicorn.Server
    thread: threading.Thread
    settings: Settings

    @property
    def url(self) -> str:
        """Where this process listens (which is not its public URL behind a balancer)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def start_api(
    settings: Settings,
    *,
    routers: Sequence[APIRouter] = (),
    public_url: str | None = None,
    connector: Connect = connect,
) -> ApiServer:
    """Serve ``create_app(settings)`` (with ``routers`` added, for benchmarks) and wait until
    ``/healthz`` answers. The API's public URL is its own address unless ``public_url`` names
    another (a replica behind a load balancer answers for the balancer's URL); ``connector``
    replaces the product's Temporal connection (a benchmark without payload encryption)."""
    port = processes.free_port()
    settings = settings.model_copy(update={"api_url": public_url or f"http://127.0.0.1:{port}"})
    app = create_app(settings, connector=connector)
    for router in routers:
        app.include_router(router)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    gateway = ApiServer(
        port=port,
        server=server,
        thread=thread,
        settings=settings,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{gateway.url}/healthz", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            gateway.stop()
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
