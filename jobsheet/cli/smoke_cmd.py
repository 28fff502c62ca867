"""``jobsheet smoke``: run one workflow through the stack to show that it works end to end."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid

from temporalio.worker import Worker

from jobsheet.cli.options import JSON_OPTION
from jobsheet.cli.output import console, print_json
from jobsheet.core.objectstore import internal_client
from jobsheet.core.settings import Settings, load_settings
from jobsheet.core.temporal import connect


async def run_smoke(settings: Settings) -> dict[str, str | int]:
    """Run SmokeWorkflow on a fresh task queue with an in-process worker; return what it did."""
    from activities.smoke import SmokeActivities
    from workflows.smoke import SmokeInput, SmokeWorkflow

    client = await connect(settings)
    task_queue = f"smoke-{uuid.uuid4().hex[:8]}"
    workflow_id = f"smoke-{uuid.uuid4()}"
    activities = SmokeActivities(internal_client(settings))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[SmokeWorkflow],
            activities=[activities.write_and_read_object],
            activity_executor=executor,
        ):
            result = await client.execute_workflow(
                SmokeWorkflow.run,
                SmokeInput(bucket=settings.bucket, message="hello from jobsheet"),
                id=workflow_id,
                task_queue=task_queue,
            )
    namespace = settings.temporal_connect_config()["namespace"]
    return {
        "workflow_id": workflow_id,
        "object": f"s3://{settings.bucket}/{result.key}",
        "size": result.size,
        "sha256": result.sha256,
        "web_ui": f"{settings.web_ui_url}/namespaces/{namespace}/workflows/{workflow_id}",
    }


def smoke(as_json: bool = JSON_OPTION) -> None:
    """Run a smoke workflow that writes and reads an object through the stack."""
    outcome = asyncio.run(run_smoke(load_settings()))
    if as_json:
        print_json(outcome)
        return
    console.print(f"smoke workflow [bold]{outcome['workflow_id']}[/bold] completed")
    console.print(
        f"wrote {outcome['object']} ({outcome['size']} bytes, sha256 {outcome['sha256']})"
    )
    console.print(f"see it in the Temporal Web UI: [bold]{outcome['web_ui']}[/bold]")
