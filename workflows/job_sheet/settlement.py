"""The run, the settlement of its cost, and the end of every job.

Settlement runs once and is never interrupted: a cancellation that arrives while it runs finds
the run already over, and the job ends as the run did.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.compute import ComputeActivities
    from activities.jobs import JobActivities
    from activities.storage import SealedOutputs, SealOutputsInput, StorageActivities
    from jobsheet.compute.billing import charge_for
    from jobsheet.compute.models import RunRequest, RunResult, RunStatus, Usage
    from jobsheet.jobs import cleanup
    from jobsheet.jobs.messages import FinishInput, IssuedPar, StartRunInput
    from jobsheet.jobs.models import JobState, ParKind, input_key, output_prefix
    from jobsheet.ledger.errors import PAYMENT_VOIDED
    from jobsheet.ledger.models import ReceiptInput, ReceiptResult
    from jobsheet.pars.read import ReadPar

from workflows.job_sheet import steps
from workflows.job_sheet.state import REFUND_HOLD, RELEASE_CONTRACT, JobRun
from workflows.job_sheet.submission import release_contract

OUTCOME_STATES = {
    RunStatus.SUCCEEDED: JobState.SUCCEEDED,
    RunStatus.FAILED: JobState.FAILED,
    RunStatus.OUTPUT_TOO_LARGE: JobState.FAILED,
    RunStatus.INPUT_MISSING: JobState.FAILED,
    RunStatus.TIMED_OUT: JobState.TIMED_OUT,
}


async def run_and_settle(job: JobRun) -> None:
    """Run the calculation (stopped by a cancellation), then settle what it cost."""
    contract = job.held_contract
    started = workflow.now()
    job.close_pars(ParKind.UPLOAD, ParKind.RUN)
    job.change(JobState.RUNNING, "the run was triggered")
    try:
        read: IssuedPar = await steps.local(
            JobActivities.start_run,
            StartRunInput(sheet=job.sheet, input_until=contract.deadline),
            "persist the running sheet; issue the input read PAR",
        )
    except steps.StepFailed as exc:
        if steps.refusal_type(exc) != PAYMENT_VOIDED:
            raise
        # The hold paying for the job was taken back (its cheque had been cashed before):
        # the job ends without running, and nothing is charged.
        job.sheet.error = f"the run was refused: {steps.cause(exc)}"
        await job.saga.unwind()
        await end(job, JobState.FAILED, job.sheet.error)
        return
    job.ran = True
    job.sheet.pars.append(read.metadata)
    assert job.write_par is not None
    run = workflow.start_activity_method(
        ComputeActivities.run_calculation,
        RunRequest(
            contract=contract,
            input=ReadPar(
                url=read.url, key=input_key(job.uid), expires_at=read.metadata.expires_at
            ),
            output=job.write_par,
        ),
        task_queue=contract.task_queue,
        start_to_close_timeout=timedelta(seconds=contract.max_runtime_seconds)
        + steps.RUN_TRANSFER_ALLOWANCE,
        schedule_to_close_timeout=max(contract.deadline - workflow.now(), timedelta(minutes=1)),
        heartbeat_timeout=timedelta(seconds=job.config.run_heartbeat_seconds),
        retry_policy=steps.RUN_RETRY,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=f"run {contract.calculation}",
    )
    await workflow.wait_condition(lambda: run.done() or job.cancel_reason is not None)
    if not run.done():
        run.cancel()
    result: RunResult | None = None
    try:
        result = await run
    except (steps.StepFailed, asyncio.CancelledError) as exc:
        if job.cancel_reason is None:
            job.sheet.error = f"the compute service failed: {steps.cause(exc)}"
    if job.cancel_reason is not None:
        elapsed = (workflow.now() - started).total_seconds()
        job.sheet.usage = Usage(wall_seconds=elapsed, cpu_seconds=0)
        # A cancelled run pays for the wall time it had, like a failed one (docs/billing.md).
        paid_as = RunResult(
            contract_id=contract.contract_id, status=RunStatus.FAILED, usage=job.sheet.usage
        )
        await settle(job, paid_as, JobState.CANCELLED)
        return
    if result is None:
        await settle(job, None, JobState.FAILED)
        return
    sheet = job.sheet
    sheet.run_status = result.status.value
    sheet.usage = result.usage
    sheet.exit_status = result.exit_code
    sheet.stderr_tail = result.stderr_tail
    sheet.outputs = list(result.outputs)
    if result.status != RunStatus.SUCCEEDED:
        sheet.error = f"the calculation ended as {result.status.value}"
    await settle(job, result, OUTCOME_STATES[result.status])


async def settle(job: JobRun, result: RunResult | None, final: JobState) -> None:
    """Receipt the cost (never above the hold), release the contract and seal the outputs at
    the same time, then end the job."""
    contract, sheet = job.held_contract, job.sheet
    job.change(JobState.SETTLING, "settling the cost")
    note = sheet.credit_notes[-1]
    charge = min(charge_for(contract, result), note.held)
    work: list[Any] = [
        steps.local(
            JobActivities.receipt_credit_note,
            ReceiptInput(idempotency_key=f"{job.uid}:receipt", credit_note=note, amount=charge),
            f"receipt {charge} and refund the rest",
        ),
        release_contract(job, contract.contract_id),
    ]
    keep = final != JobState.CANCELLED and bool(sheet.outputs)
    if keep:
        work.append(
            steps.long(
                StorageActivities.seal_outputs,
                SealOutputsInput(job_uid=job.uid, outputs=sheet.outputs),
                "seal the outputs where no PAR can write",
            )
        )
    done = await asyncio.gather(*work)
    receipt: ReceiptResult = done[0]
    sheet.costs.charged = receipt.paid
    sheet.costs.refunded = receipt.released
    job.saga.discard(REFUND_HOLD)
    job.saga.discard(RELEASE_CONTRACT)
    if keep:
        sealed: SealedOutputs = done[2]
        sheet.outputs = list(sealed.outputs)
        sheet.outputs_discarded = list(sealed.discarded)
    else:
        sheet.outputs = []
    if sheet.outputs:
        now = workflow.now()
        sheet.outputs_retained_until = now + timedelta(seconds=job.config.retention_seconds)
        # Download PARs are presigned by the API on request, until the retention ends.
        job.record_par(ParKind.DOWNLOAD, output_prefix(job.uid), now, sheet.outputs_retained_until)
    note_text = job.cancel_reason if final == JobState.CANCELLED else None
    await end(job, final, note_text or sheet.error or "the run succeeded")


async def end(job: JobRun, state: JobState, note: str) -> None:
    """Close the job in ``state``: persist the final sheet, delete what it does not keep, and
    leave the later clean-ups (late writes, the end of the retention) to the storage sweep."""
    sheet = job.sheet
    kept = (ParKind.DOWNLOAD,) if state in cleanup.RAN_STATES else ()
    job.close_pars(*[kind for kind in ParKind if kind not in kept])
    if state in (JobState.CANCELLED, JobState.EXPIRED, JobState.REJECTED):
        sheet.error = sheet.error or note
    job.change(state, note)
    now = workflow.now()
    await steps.local(
        JobActivities.finish_job,
        FinishInput(
            sheet=sheet, cleanups=cleanup.plan(sheet, writes_end=_writes_end(job, now), now=now)
        ),
        f"persist the {state.value} sheet; delete what is not kept",
    )


def _writes_end(job: JobRun, now: datetime) -> datetime | None:
    """When no PAR of this job can write any more, or None when none could."""
    ends: list[datetime] = []
    if job.upload_url:
        ends.append(job.deadline)  # a presigned PUT cannot be revoked
    if job.write_par is not None and job.ran:
        # The API grants no PUT once the persisted sheet has ended (now); the last one granted
        # lives at most write_url_seconds, and never past the capability.
        url_life = timedelta(seconds=job.config.write_url_seconds)
        ends.append(min(job.write_par.expires_at, now + url_life))
    return max(ends) if ends else None
