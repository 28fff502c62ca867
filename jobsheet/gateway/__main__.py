"""``python -m jobsheet.gateway``: serve the PAR gateway on settings.gateway_host:gateway_port."""

from __future__ import annotations

import uvicorn

from jobsheet.gateway.app import create_app
from jobsheet.settings import load_settings


def main() -> None:
    settings = load_settings()
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port)


if __name__ == "__main__":
    main()
