"""A test workflow that calls one compute activity on a compute service's task queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType


class CallInput(BaseModel):
    activity: str
    task_queue: str
    argument: dict[str, Any]
    start_to_close_seconds: float = 120
    heartbeat_timeout_seconds: float | None = None
    maximum_attempts: int = 3


@workflow.defn
class CallComputeWorkflow:
    """Runs one activity by name and returns its result as a JSON dict."""

    @workflow.run
    async def run(self, call: CallInput) -> dict[str, Any]:
        heartbeat = call.heartbeat_timeout_seconds
        result: dict[str, Any] = await workflow.execute_activity(
            call.activity,
            call.argument,
            task_queue=call.task_queue,
            start_to_close_timeout=timedelta(seconds=call.start_to_close_seconds),
            heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                maximum_attempts=call.maximum_attempts,
            ),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            result_type=dict,
        )
        return result
