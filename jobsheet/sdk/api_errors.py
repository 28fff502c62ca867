"""Turning the API's refusals (JSON ``ApiError`` with an HTTP status) into the SDK's errors."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from jobsheet.contracts.api import ApiError
from jobsheet.sdk.errors import (
    BadInput,
    JobsheetError,
    NotFound,
    Refused,
    Unauthorised,
    Unavailable,
)

BAD_INPUT_STATUSES = frozenset({400, 413, 422})
# Refusals (the ``error`` of an ``ApiError``) that are about the caller's input, or name
# something that does not exist, whatever the status.
BAD_INPUT_CAUSES = frozenset({"UnknownCalculation", "BadParameters", "UnknownService"})
NOT_FOUND_CAUSES = frozenset({"UnknownAccount", "UnknownUser", "UnknownKey"})
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


def api_error(response: httpx.Response) -> ApiError:
    """The refusal in ``response``: its ``ApiError`` body, or one made from whatever it holds."""
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        try:
            return ApiError.model_validate(data)
        except ValidationError:
            detail = data.get("detail") or data.get("message")
            if detail:
                return ApiError(error=f"HTTP{response.status_code}", message=str(detail))
    text = " ".join(response.text.split())[:300]
    return ApiError(
        error=f"HTTP{response.status_code}", message=text or response.reason_phrase or "refused"
    )


def error_for(
    status: int, refusal: ApiError, *, what: str, missing: str = "", retry_after: str = ""
) -> JobsheetError:
    """The SDK error for the API refusing ``what`` with ``status`` and ``refusal``.

    ``missing`` is the sentence for a 404 (e.g. "job job-… does not exist"); the API answers 404
    for other users' things too, so the sentence never claims more than "does not exist".
    """
    error, message = refusal.error, " ".join(refusal.message.split())
    refused = f"{what} was refused ({error}): {message}"
    if status == 401:
        return Unauthorised(refused, reason=error)
    if status == 404:
        return NotFound(missing or f"{what} failed: {message}", reason=error or "NotFound")
    if status in BAD_INPUT_STATUSES or error in BAD_INPUT_CAUSES:
        return BadInput(refused, reason=error)
    if error in NOT_FOUND_CAUSES:
        return NotFound(refused, reason=error)
    if status == 429:
        wait = f" (retry after {retry_after}s)" if retry_after else ""
        return Refused(refused + wait, reason=error or "TooManyRequests")
    if status in UNAVAILABLE_STATUSES:
        return Unavailable(
            f"{what} failed: the API is unavailable ({error}): {message}", reason=error
        )
    if status in (403, 409, 410):
        return Refused(refused, reason=error)
    return JobsheetError(f"{what} failed with HTTP {status} ({error}): {message}", reason=error)


def error_from_response(response: httpx.Response, *, what: str, missing: str = "") -> JobsheetError:
    """The SDK error for a refusal the API answered with ``response``."""
    return error_for(
        response.status_code,
        api_error(response),
        what=what,
        missing=missing,
        retry_after=response.headers.get("retry-after", ""),
    )


STREAM_ERROR_STATUSES = {"NotFound": 404, "Unavailable": 503, "Timeout": 504}


def stream_error(data: str, *, what: str, uid: str) -> JobsheetError:
    """The SDK error for an ``event: error`` in an event stream (its data is an ``ApiError``)."""
    try:
        refusal = ApiError.model_validate_json(data)
    except ValidationError:
        refusal = ApiError(error="StreamError", message=" ".join(data.split())[:300])
    status = STREAM_ERROR_STATUSES.get(refusal.error, 409)
    return error_for(status, refusal, what=what, missing=f"job {uid} does not exist")
