"""A smoke workflow: one activity round trip through Temporal and the object store."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.smoke import SmokeActivities, SmokeObjectInput, SmokeObjectResult


class SmokeInput(BaseModel):
    bucket: str
    message: str


@workflow.defn
class SmokeWorkflow:
    """Writes the message to ``smoke/<workflow id>.txt`` and returns what the store holds."""

    @workflow.run
    async def run(self, request: SmokeInput) -> SmokeObjectResult:
        return await workflow.execute_activity_method(
            SmokeActivities.write_and_read_object,
            SmokeObjectInput(
                bucket=request.bucket,
                key=f"smoke/{workflow.info().workflow_id}.txt",
                content=request.message,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            summary="write and read back a smoke object",
        )
