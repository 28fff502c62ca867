"""The gateway's app factory: each kind of PAR contributes its routes from its own module."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from jobsheet.api import run_routes, write_routes
from jobsheet.settings import Settings


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def create_app(settings: Settings) -> Starlette:
    """The PAR gateway for ``settings``; it holds the S3 credentials so PAR holders need none."""
    routes: list[BaseRoute] = [Route("/healthz", _health, methods=["GET"])]
    routes += write_routes.routes(settings)
    routes += run_routes.routes(settings)
    return Starlette(routes=routes)
