"""Every activity the job sheet calls, with its options in one place.

Short steps are local activities on the jobs worker (``activities/jobs.py``): during submission
each is bounded, and a failure rejects the job; afterwards (the run, settlement, compensation)
they retry until they succeed. The long ones (checking the input, sealing the outputs, the run
itself) are ordinary activities that heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities

ParamT = TypeVar("ParamT")
ResultT = TypeVar("ResultT")

STEP_TIMEOUT = timedelta(seconds=60)
SUBMIT_STEP_TIMEOUT = timedelta(minutes=2)
LONG_STEP_TIMEOUT = timedelta(minutes=30)
LONG_STEP_HEARTBEAT = timedelta(minutes=2)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Infrastructure failures of a run (a worker lost, S3 or the API down) are retried with backoff
# until the contract's deadline (its schedule-to-close timeout). A calculation's own failure is a
# result, never retried; refusals are non-retryable errors.
RUN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
)
RUN_TRANSFER_ALLOWANCE = timedelta(minutes=10)


async def local(
    step: Callable[[JobActivities, ParamT], Any],
    request: ParamT,
    summary: str,
    *,
    bounded: bool = False,
) -> Any:
    """Run a job step as a local activity; ``bounded`` (submission) gives up after two minutes."""
    return await workflow.execute_local_activity_method(
        step,
        request,
        start_to_close_timeout=STEP_TIMEOUT,
        schedule_to_close_timeout=SUBMIT_STEP_TIMEOUT if bounded else None,
        retry_policy=RETRY,
        summary=summary[:200],
    )


async def long(step: Callable[[Any, ParamT], Any], request: ParamT, summary: str) -> Any:
    """Run a storage step that reads whole objects, on the jobs worker's task queue."""
    return await workflow.execute_activity_method(
        step,
        request,
        start_to_close_timeout=LONG_STEP_TIMEOUT,
        heartbeat_timeout=LONG_STEP_HEARTBEAT,
        retry_policy=RETRY,
        summary=summary[:200],
    )


StepFailed = FailureError
"""What a failed step raises: an ``ActivityError`` wrapping the cause, or (a local activity
refused on its first attempt) the ``ApplicationError`` itself."""


def cause(exc: BaseException) -> str:
    """What went wrong, as ``Type: message`` for a refusal."""
    while isinstance(exc, ActivityError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, ApplicationError):
        return f"{exc.type}: {exc.message}"
    return str(exc) or type(exc).__name__


def refusal_type(exc: BaseException) -> str | None:
    """The refusal's type when an activity failed for a business reason (non-retryable)."""
    while isinstance(exc, ActivityError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, ApplicationError) and exc.non_retryable:
        return exc.type
    return None
