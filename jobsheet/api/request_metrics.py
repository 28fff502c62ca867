"""ASGI middleware that times every API request by route template and status, and counts PAR calls.

Labels name the route's template (``/par/run/{uid}/{token}``), never the path a caller sent: a
PAR's URL is its credential, and raw paths would make a series per job. A request no route
matches is labelled ``unmatched``; a method outside the usual few, ``other``.
"""

from __future__ import annotations

import time

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobsheet.telemetry.job_metrics import API_REQUEST_DURATION, PAR_CALLS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
PAR_PREFIX = "/par/"


class RequestMetrics:
    """Observe ``jobsheet_api_request_duration_seconds`` for each HTTP request, and
    ``jobsheet_par_calls_total`` for the PAR routes'. Added outermost, so that refusals made by
    other middleware (413) are timed too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # unless a response starts: an exception became the server's 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = time.perf_counter() - began
            route = route_template(scope)
            method = scope.get("method", "")
            API_REQUEST_DURATION.labels(
                method=method if method in METHODS else "other", route=route, status=str(status)
            ).observe(elapsed)
            if route.startswith(PAR_PREFIX):
                PAR_CALLS.labels(route=route, status=str(status)).inc()


def route_template(scope: Scope) -> str:
    """The template of the route that answered (or would have answered) ``scope``."""
    route = scope.get("route")
    if route is None:
        route = _matching_route(scope)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def _matching_route(scope: Scope) -> BaseRoute | None:
    """The route that matches ``scope`` (a request refused before routing, e.g. 413)."""
    app = scope.get("app")
    routes: list[BaseRoute] = list(getattr(getattr(app, "router", None), "routes", []))
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial
