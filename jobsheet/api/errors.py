"""Refusals of the public API: one JSON shape, ``{"error", "message"}``, for every status.

Handlers raise :class:`ApiRefusal`; FastAPI's own errors (validation, unknown route, wrong
method) are answered in the same shape, so a client reads every refusal the same way.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobsheet.contracts.api import ApiError

log = logging.getLogger("jobsheet.api")

# The statuses a route documents in /openapi.json besides its success.
COMMON_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": ApiError, "description": "missing, stale, altered or unknown-key signature"},
    404: {"model": ApiError, "description": "no such thing of yours"},
    413: {"model": ApiError, "description": "the body is too large"},
    422: {"model": ApiError, "description": "the body or a parameter is invalid (named)"},
    503: {"model": ApiError, "description": "a back-end service is unavailable; call again"},
}


class ApiRefusal(Exception):
    """A refusal with its HTTP status, short error name and one readable sentence."""

    def __init__(
        self, status: int, error: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers


def refusal_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ApiError(error=error, message=" ".join(message.split()))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def not_found(what: str) -> ApiRefusal:
    """The one answer for "it does not exist" and "it is not yours": never says which."""
    return ApiRefusal(404, "NotFound", f"no {what} of yours")


def _field(location: tuple[object, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiRefusal)
    _log_refusal(request, exc.status, exc.error, exc.message)
    return refusal_response(exc.status, exc.error, exc.message, exc.headers)


def _log_refusal(request: Request, status: int, error: str, message: str) -> None:
    """One INFO line per refusal, naming the route (its template: a PAR's path holds its
    token), the job when the route names one, and the reason."""
    route = getattr(request.scope.get("route"), "path", "unknown route")
    fields = {"route": route, "status": status, "reason": error, "detail": message}
    job = request.path_params.get("uid")
    if job:
        fields["job"] = job
    log.info(
        "refused %s %s with %d %s: %s", request.method, route, status, error, message, extra=fields
    )


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return refusal_response(422, "InvalidRequest", "the request is invalid")
    first = errors[0]
    field = _field(tuple(first.get("loc", ())))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return refusal_response(422, "InvalidRequest", f"{field}: {first.get('msg', 'invalid')}{more}")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed", 413: "TooLarge"}
    error = names.get(exc.status_code, f"HTTP{exc.status_code}")
    message = str(exc.detail) if exc.detail else error
    if exc.status_code == 404:
        message = "no such route: see /docs for the API"
    return refusal_response(exc.status_code, error, message, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return refusal_response(500, "InternalError", "the request failed; see the API's log")


def install_handlers(app: FastAPI) -> None:
    """Answer every refusal as ``ApiError`` JSON."""
    app.add_exception_handler(ApiRefusal, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
