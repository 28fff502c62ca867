"""The job sheet workflow: one job from submission to its end, on every path. It completes when
the job does, with the final sheet as its result.

The lifecycle runs as one task that a cancellation never interrupts: an owner's cancel and a
Temporal cancel both set the reason the lifecycle reads at its next wait (for the trigger, or
for the run), so no step is abandoned half done and settlement runs exactly once.
"""

from __future__ import annotations

import asyncio
import hmac
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from activities.storage import CheckInputInput, InputCheck, StorageActivities
    from jobsheet.contracts.refusals import refusal
    from jobsheet.identity.models import VerifyAuthorisationInput
    from jobsheet.jobs.messages import (
        CancelInput,
        JobStart,
        SubmitInput,
        SubmitResult,
        TriggerRunInput,
        TriggerRunResult,
        cancel_resource,
        run_par_url,
    )
    from jobsheet.jobs.models import JobSheet, JobState, input_key

from workflows.job_sheet import steps
from workflows.job_sheet.settlement import end, run_and_settle
from workflows.job_sheet.state import JobRun
from workflows.job_sheet.submission import Rejected, submit


@workflow.defn
class JobSheetWorkflow:
    """One job sheet. Its id is the job uid, derived from the authorisation's signature."""

    @workflow.init
    def __init__(self, start: JobStart) -> None:
        self.job = JobRun.for_start(start)
        self._lock = asyncio.Lock()

    @property
    def sheet(self) -> JobSheet:
        return self.job.sheet

    @workflow.run
    async def run(self, start: JobStart) -> JobSheet:
        lifecycle = asyncio.create_task(self._lifecycle())
        while True:
            try:
                await asyncio.shield(lifecycle)
                break
            except asyncio.CancelledError:
                if lifecycle.done():
                    # The worker evicted this run from its cache and cancelled every task:
                    # let the cancellation through (the run resumes elsewhere from history).
                    raise
                self._cancel("the workflow was cancelled")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.sheet

    async def _lifecycle(self) -> None:
        job = self.job
        job.change(JobState.SUBMITTED, "submitted")
        try:
            await submit(job)
        except Rejected as refusal:
            await end(job, JobState.REJECTED, str(refusal))
            return
        if await self._wait_for_trigger():
            await run_and_settle(job)
            return
        await job.saga.unwind()
        if job.cancel_reason is not None:
            await end(job, JobState.CANCELLED, job.cancel_reason)
        else:
            await end(job, JobState.EXPIRED, "no run was triggered before the deadline")

    async def _wait_for_trigger(self) -> bool:
        """True when the run was triggered; False on cancellation or at the deadline."""
        job = self.job
        if job.cancel_reason is None:
            try:
                await workflow.wait_condition(
                    lambda: job.triggered or job.cancel_reason is not None,
                    timeout=max(job.deadline - workflow.now(), timedelta(seconds=1)),
                    timeout_summary="expiry: undo everything unless the run was triggered",
                )
            except TimeoutError:
                pass
        async with self._lock:  # a trigger being checked right now finishes first
            return job.triggered

    def _cancel(self, reason: str) -> None:
        """Ask the lifecycle to stop: honoured until the run has ended (then it settles)."""
        if self.job.cancel_reason is None and self.sheet.state in (
            JobState.SUBMITTED,
            JobState.AWAITING_UPLOAD,
            JobState.RUNNING,
        ):
            self.job.cancel_reason = reason

    # --- queries and updates ------------------------------------------------------------------

    @workflow.query
    def get_sheet(self) -> JobSheet:
        """The job sheet as it stands (no secrets)."""
        return self.sheet

    @workflow.update
    async def submit(self, _request: SubmitInput) -> SubmitResult:
        """Wait until the job is paid for and its PARs exist; return them (or the refusal)."""
        job = self.job
        await workflow.wait_condition(lambda: self.sheet.state != JobState.SUBMITTED)
        # A retried submission (the first answer was lost) gets the first answer again, with
        # the job's state as it is now.
        if (
            job.contract is None
            or not job.upload_url
            or self.sheet.state
            in (
                JobState.REJECTED,
                JobState.CANCELLED,
            )
        ):
            raise refusal(self.sheet.error or f"the job is {self.sheet.state.value}", "JobRejected")
        return SubmitResult(
            uid=job.uid,
            state=self.sheet.state,
            upload_url=job.upload_url,
            run_url=run_par_url(job.config.gateway_url, job.uid, job.contract.run_token),
            expires_at=job.deadline,
            held=self.sheet.costs.held,
        )

    @workflow.update
    async def trigger_run(self, request: TriggerRunInput) -> TriggerRunResult:
        """Start the run if the input is there and matches what the request promised."""
        job = self.job
        async with self._lock:
            if self.sheet.state != JobState.AWAITING_UPLOAD or job.triggered:
                return TriggerRunResult(
                    uid=job.uid,
                    state=self.sheet.state,
                    started=False,
                    message=f"the job is now {self.sheet.state.value}; nothing changed",
                )
            promised = job.start.request
            check: InputCheck = await steps.long(
                StorageActivities.check_input,
                CheckInputInput(
                    key=input_key(job.uid), size=promised.input_size, sha256=promised.input_sha256
                ),
                "check the uploaded input",
            )
            if not check.ok:
                raise refusal(f"the run cannot start: {check.problem}", "InputNotReady")
            job.triggered = True
            return TriggerRunResult(
                uid=job.uid, state=JobState.RUNNING, started=True, message="the run starts"
            )

    @trigger_run.validator
    def _validate_trigger(self, request: TriggerRunInput) -> None:
        job, state = self.job, self.sheet.state
        token = job.contract.run_token if job.contract else ""
        if not token or not hmac.compare_digest(request.token.encode(), token.encode()):
            raise refusal("the run PAR's token is not valid for this job", "WrongToken")
        expired = workflow.now() >= job.deadline
        if state == JobState.EXPIRED or (expired and state == JobState.AWAITING_UPLOAD):
            raise refusal(f"the run PAR expired at {job.deadline.isoformat()}", "Expired")
        if state == JobState.SUBMITTED:
            raise refusal("the job is not ready to run yet", "WrongState")
        if state != JobState.AWAITING_UPLOAD or job.triggered:
            raise refusal(
                f"the run was already triggered; the job is now {state.value}", "AlreadyTriggered"
            )

    @workflow.update
    async def cancel(self, request: CancelInput) -> JobSheet:
        """The owner cancels: compensate what was done, in reverse, and end as cancelled."""
        job = self.job
        if request.authorisation.user != job.start.request.user:
            raise refusal("only the job's owner may cancel it", "NotJobOwner")
        await steps.local(
            JobActivities.verify_cancel,
            VerifyAuthorisationInput(
                idempotency_key=f"{job.uid}:cancel:{request.authorisation.nonce}",
                authorisation=request.authorisation,
                resource=cancel_resource(job.uid),
            ),
            "verify the owner's cancellation",
            bounded=True,
        )
        self._cancel(request.reason)
        await workflow.wait_condition(lambda: self.sheet.terminal)
        return self.sheet

    @cancel.validator
    def _validate_cancel(self, request: CancelInput) -> None:
        state = self.sheet.state
        if self.sheet.terminal:
            raise refusal(f"the job already ended as {state.value}", "WrongState")
        if state == JobState.SETTLING:
            raise refusal(
                "the run has ended and the job is settling its cost; it ends as the run did",
                "WrongState",
            )
