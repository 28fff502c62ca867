"""Updates and queries by the name their workflow declares, typed with their input and result.

Code below the workflows (an activity that calls another workflow, a library client that an
activity uses) cannot import a workflow class: the workflow imports it. It calls through these
instead, declared once next to the models; tests/contracts/test_workflow_calls.py checks each against the
workflow's handler of that name. (The handlers keep their method names rather than
``@workflow.update(name=...)``: with a name the SDK types an async update's result as a
coroutine, and typed handles on the workflow class would lose their result type.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Update(Generic[ArgT, ResultT]):
    """A workflow update: its name, and the type its result is read as."""

    name: str
    result_type: Any

    async def execute(
        self, handle: WorkflowHandle[Any, Any], arg: ArgT, *, id: str | None = None
    ) -> ResultT:
        """Send the update to ``handle``'s workflow and wait for its result."""
        result: ResultT = await handle.execute_update(
            self.name, arg, id=id, result_type=self.result_type
        )
        return result

    async def execute_with_start(
        self,
        client: Client,
        arg: ArgT,
        *,
        start: WithStartWorkflowOperation[Any, Any],
        id: str | None = None,
    ) -> ResultT:
        """Send the update to the workflow ``start`` starts unless it is running already."""
        result: ResultT = await client.execute_update_with_start_workflow(
            self.name, arg, id=id, start_workflow_operation=start, result_type=self.result_type
        )
        return result


@dataclass(frozen=True)
class Query(Generic[ResultT]):
    """A workflow query: its name, and the type its answer is read as."""

    name: str
    result_type: Any

    async def ask(self, handle: WorkflowHandle[Any, Any], *args: Any) -> ResultT:
        """Query ``handle``'s workflow with ``args``."""
        answer: ResultT = await handle.query(
            self.name, args=list(args), result_type=self.result_type
        )
        return answer


def send_again_later(exc: RPCError) -> bool:
    """Whether an update refused with ``exc`` is worth sending again after a back-off (the same
    update id is deduplicated, so the repeat is harmless): the workflow has its maximum of
    updates in flight, or the server aborted the update (its workflow task was lost, or the run
    continued as new) and the SDK's own quick retries saw only that. Other transient errors the
    SDK retries itself."""
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return True
    return exc.status == RPCStatusCode.UNAVAILABLE and "update was aborted" in exc.message
