"""The job sheet workflow: one job from submission to a settled, recorded end, on every path.

Every state change of a job sheet happens in this file: submission (verify, contract, pay,
issue PARs), waiting for the run trigger until the deadline, running, settling, expiry,
cancellation with compensation in reverse, the retention of outputs and the clean-up of
everything the job's PARs could write.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.compute import ComputeActivities
    from activities.ledger import LedgerActivities
    from activities.storage import (
        CheckInputInput,
        DeleteObjectsInput,
        IssueObjectParInput,
        IssueWriteParInput,
        PersistSheetInput,
        SealOutputsInput,
        StorageActivities,
    )
    from jobsheet import search_attributes
    from jobsheet.billing import charge_for
    from jobsheet.compute.models import (
        ComputeContract,
        ContractRequest,
        ReleaseRequest,
        RunRequest,
        RunResult,
        RunStatus,
        Usage,
    )
    from jobsheet.jobs import details
    from jobsheet.jobs.messages import (
        CancelInput,
        DownloadPar,
        DownloadPars,
        DownloadParsInput,
        JobConfig,
        JobPolicyInput,
        JobStart,
        SubmitInput,
        SubmitResult,
        TriggerRunInput,
        TriggerRunResult,
        cancel_resource,
        run_par_url,
    )
    from jobsheet.jobs.models import (
        ContractSummary,
        JobSheet,
        JobState,
        ParKind,
        ParMetadata,
        TimelineEntry,
        input_key,
        job_prefix,
        output_prefix,
        staging_prefix,
    )
    from jobsheet.ledger.models import (
        CashChequeInput,
        CreditNote,
        ReceiptInput,
        RefundInput,
        VerifyAuthorisationInput,
    )
    from jobsheet.storage_pars import ReadPar
    from jobsheet.write_par import WritePar

ParamT = TypeVar("ParamT")
ResultT = TypeVar("ResultT")

STEP_TIMEOUT = timedelta(seconds=60)
SUBMIT_STEP_TIMEOUT = timedelta(minutes=2)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
RUN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)
# Behind PATCH_RUN_RETRIES: infrastructure failures (a worker lost, S3 or the API down) are
# retried with backoff until the contract's deadline (the schedule-to-close timeout), not for a
# fixed count. A calculation's own failure is a result, never retried; refusals are
# non-retryable errors.
RUN_RETRY_UNTIL_DEADLINE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
)
RUN_TRANSFER_ALLOWANCE = timedelta(minutes=10)
# Settlement must end before the credit note's automatic refund: hold it this long past the run.
RECEIPT_MARGIN = timedelta(hours=1)
SEAL_TIMEOUT = timedelta(minutes=30)
# A presigned URL's life is checked by S3's clock, and it was signed by another host's: sweep
# this long after the last one can have expired.
SWEEP_MARGIN = timedelta(seconds=15)

# Workflow changes, each behind its patch so that histories in flight still replay.
PATCH_STAGED_OUTPUTS = "staged-outputs"
"""The bucket-write PAR covers a staging prefix; settlement seals checked copies of the outputs
under the output prefix, which no PAR can write."""
PATCH_RUN_RETRIES = "run-retries-until-deadline"
"""The run retries infrastructure failures until the contract's deadline."""
PATCH_STORAGE_SWEEP = "storage-sweep-after-end"
"""Every terminal state deletes ``jobs/<uid>/``: at once when nothing is kept, at the end of the
retention otherwise, and again once every PAR that could write there has expired."""

OUTCOME_STATES = {
    RunStatus.SUCCEEDED: JobState.SUCCEEDED,
    RunStatus.FAILED: JobState.FAILED,
    RunStatus.OUTPUT_TOO_LARGE: JobState.FAILED,
    RunStatus.INPUT_MISSING: JobState.FAILED,
    RunStatus.TIMED_OUT: JobState.TIMED_OUT,
}


class _Rejected(Exception):
    """A submission the service refuses (bad authorisation, cheque refused, unknown calculation)."""


@workflow.defn
class JobSheetWorkflow:
    """One job sheet. Its id is the job uid, derived from the authorisation's signature."""

    @workflow.init
    def __init__(self, start: JobStart) -> None:
        self._start = start
        self._policy = start.carried_config
        self.sheet = start.carried or JobSheet(
            uid=start.uid, request=start.request, authorisation=start.authorisation
        )
        self._contract: ComputeContract | None = None
        self._write_par: WritePar | None = None
        self._upload_url = ""
        self._deadline: datetime | None = None
        self._triggered = False
        self._cancel_reason: str | None = None
        self._run_started: datetime | None = None
        self._staged = False
        self._left_running_at: datetime | None = None
        self._sweep_at: datetime | None = start.carried_sweep_at
        self._retention_cut = False
        self._lock = asyncio.Lock()
        self._undo: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._download_pars: list[DownloadPar] = []

    @property
    def _config(self) -> JobConfig:
        assert self._policy is not None, "the job policy is fetched before anything else"
        return self._policy

    # --- queries and updates ------------------------------------------------------------------

    @workflow.query
    def get_sheet(self) -> JobSheet:
        """The job sheet as it stands (no secrets)."""
        return self.sheet

    @workflow.update
    async def submit(self, _request: SubmitInput) -> SubmitResult:
        """Wait until the job is paid for and its PARs exist; return them (or the refusal)."""
        await workflow.wait_condition(lambda: self.sheet.state != JobState.SUBMITTED)
        # A retried submission (the first answer was lost) gets the first answer again, with
        # the job's state as it is now.
        if self.sheet.state == JobState.REJECTED or self._contract is None:
            raise ApplicationError(
                self.sheet.error or f"the job is {self.sheet.state.value}",
                type="JobRejected",
                non_retryable=True,
            )
        assert self._deadline is not None
        return SubmitResult(
            uid=self.sheet.uid,
            state=self.sheet.state,
            upload_url=self._upload_url,
            run_url=run_par_url(self._config.gateway_url, self.sheet.uid, self._contract.run_token),
            expires_at=self._deadline,
            held=self.sheet.costs.held,
        )

    @workflow.update
    async def trigger_run(self, request: TriggerRunInput) -> TriggerRunResult:
        """Start the run if the input is there and matches what the request promised."""
        async with self._lock:
            if self.sheet.state != JobState.AWAITING_UPLOAD or self._triggered:
                return TriggerRunResult(
                    uid=self.sheet.uid,
                    state=self.sheet.state,
                    started=False,
                    message=f"the job is now {self.sheet.state.value}; nothing changed",
                )
            assert self.sheet.request is not None
            check = await workflow.execute_activity_method(
                StorageActivities.check_input,
                CheckInputInput(
                    key=input_key(self.sheet.uid),
                    size=self.sheet.request.input_size,
                    sha256=self.sheet.request.input_sha256,
                ),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
                summary="check the uploaded input",
            )
            if not check.ok:
                raise ApplicationError(
                    f"the run cannot start: {check.problem}",
                    type="InputNotReady",
                    non_retryable=True,
                )
            self._triggered = True
            return TriggerRunResult(
                uid=self.sheet.uid, state=JobState.RUNNING, started=True, message="the run starts"
            )

    @trigger_run.validator
    def _validate_trigger(self, request: TriggerRunInput) -> None:
        token = self._contract.run_token if self._contract else ""
        if not token or not hmac.compare_digest(request.token.encode(), token.encode()):
            raise ApplicationError(
                "the run PAR's token is not valid for this job", type="WrongToken"
            )
        expired = self._deadline is not None and workflow.now() >= self._deadline
        if self.sheet.state == JobState.EXPIRED or (
            expired and self.sheet.state == JobState.AWAITING_UPLOAD
        ):
            raise ApplicationError(
                f"the run PAR expired at {self._deadline.isoformat() if self._deadline else '?'}",
                type="Expired",
            )
        if self.sheet.state == JobState.SUBMITTED:
            raise ApplicationError("the job is not ready to run yet", type="WrongState")
        if self.sheet.state != JobState.AWAITING_UPLOAD or self._triggered:
            raise ApplicationError(
                f"the run was already triggered; the job is now {self.sheet.state.value}",
                type="AlreadyTriggered",
            )

    @workflow.update
    async def cancel(self, request: CancelInput) -> JobSheet:
        """The owner cancels: compensate what was done, in reverse, and end as cancelled."""
        if request.authorisation.user != self._start.request.user:
            raise ApplicationError("only the job's owner may cancel it", type="NotJobOwner")
        await workflow.execute_activity_method(
            LedgerActivities.verify_authorisation,
            VerifyAuthorisationInput(
                idempotency_key=f"{self.sheet.uid}:cancel:{request.authorisation.nonce}",
                authorisation=request.authorisation,
                resource=cancel_resource(self.sheet.uid),
            ),
            task_queue=self._config.ledger_task_queue,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=RETRY,
            summary="verify the owner's cancellation",
        )
        if not self.sheet.terminal and self._cancel_reason is None:
            self._cancel_reason = request.reason
        await workflow.wait_condition(lambda: self.sheet.terminal)
        return self.sheet

    @cancel.validator
    def _validate_cancel(self, request: CancelInput) -> None:
        if self.sheet.terminal:
            raise ApplicationError(
                f"the job already ended as {self.sheet.state.value}", type="WrongState"
            )

    @workflow.update
    async def download_pars(self, _request: DownloadParsInput) -> DownloadPars:
        """Download PARs for the outputs; re-issued when the earlier ones are near expiry."""
        if self.sheet.outputs_deleted or not self.sheet.outputs:
            raise ApplicationError("this job has no outputs to download", type="NoOutputs")
        fresh_until = workflow.now() + timedelta(minutes=10)
        if not self._download_pars or min(p.expires_at for p in self._download_pars) < fresh_until:
            await self._issue_download_pars()
        return DownloadPars(uid=self.sheet.uid, pars=list(self._download_pars))

    @download_pars.validator
    def _validate_download(self, _request: DownloadParsInput) -> None:
        if self.sheet.state not in (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT):
            raise ApplicationError(
                f"outputs are downloadable once the job has run; it is {self.sheet.state.value}",
                type="WrongState",
            )

    # --- the lifecycle ------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: JobStart) -> JobSheet:
        if start.carried is not None:
            if workflow.patched(PATCH_STORAGE_SWEEP):
                await self._wait_and_clean_up()
                await workflow.wait_condition(workflow.all_handlers_finished)
            else:
                await self._retain_outputs()
            return self.sheet
        self._policy = await self._storage(
            StorageActivities.job_policy,
            JobPolicyInput(service=start.request.service, calculation=start.request.calculation),
            "the operator's policy for this job",
        )
        try:
            await self._change(JobState.SUBMITTED, "submitted")
            try:
                await self._submit()
            except _Rejected as refusal:
                self.sheet.error = str(refusal)
                await self._compensate()
                await self._end(JobState.REJECTED, str(refusal))
                if workflow.patched(PATCH_STORAGE_SWEEP):
                    await self._clean_up_storage()
                    await workflow.wait_condition(workflow.all_handlers_finished)
                return self.sheet
            if await self._wait_for_trigger():
                await self._run_and_settle()
            elif self._cancel_reason is not None:
                await self._compensate()
                await self._end(JobState.CANCELLED, self._cancel_reason)
            else:
                await self._compensate()
                await self._end(JobState.EXPIRED, "no run was triggered before the deadline")
        except asyncio.CancelledError:
            # A workflow cancel: compensate in full. The cancellation was delivered once, so the
            # compensating activities below run normally.
            self._cancel_reason = self._cancel_reason or "the workflow was cancelled"
            if not self.sheet.terminal:
                await self._cancel_in_flight()
        if workflow.patched(PATCH_STORAGE_SWEEP):
            await self._clean_up_storage()
        elif self.sheet.outputs and not self.sheet.outputs_deleted:
            await self._retain_outputs()
        else:
            await self._delete_uploads()
            if self.sheet.state in (JobState.CANCELLED, JobState.REJECTED):
                await self._sweep_uploads_after_deadline()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.sheet

    async def _submit(self) -> None:
        request = self._start.request
        uid = self.sheet.uid
        resource = request.fingerprint()
        if self._config.refusal:
            # The operator's calculations file has no such service or calculation: refused
            # before anything is done (no compute queue nobody polls is waited for).
            raise _Rejected(self._config.refusal)
        if self._start.authorisation.user != request.user:
            raise _Rejected("the authorisation is not by the user named in the request")
        await self._ledger(
            LedgerActivities.verify_authorisation,
            VerifyAuthorisationInput(
                idempotency_key=f"{uid}:authorise",
                authorisation=self._start.authorisation,
                resource=resource,
            ),
            "verify the user's authorisation",
        )
        self._deadline = workflow.now() + timedelta(seconds=self._config.expiry_seconds)
        self.sheet.expires_at = self._deadline
        contract = await self._step(
            workflow.execute_activity_method(
                ComputeActivities.contract_calculation,
                ContractRequest(
                    job_uid=uid,
                    calculation=request.calculation,
                    parameters=request.parameters,
                    run_by=self._deadline,
                ),
                task_queue=self._config.compute_task_queue,
                schedule_to_close_timeout=SUBMIT_STEP_TIMEOUT,
                retry_policy=RETRY,
                summary=f"contract {request.calculation} on {request.service}",
            )
        )
        self._contract = contract
        self.sheet.contract = ContractSummary(
            **contract.model_dump(
                include=set(ContractSummary.model_fields) - {"released"}, mode="python"
            )
        )
        self.sheet.costs.quoted = contract.quote
        self._undo.append(("release the compute contract", self._release_contract))

        receipt_within = contract.deadline + RECEIPT_MARGIN - workflow.now()
        note: CreditNote = await self._ledger(
            LedgerActivities.cash_cheque,
            CashChequeInput(
                idempotency_key=f"{uid}:cash",
                cheque=self._start.cheque,
                spend=contract.quote,
                recipient=self._config.provider_account,
                resource=resource,
                receipt_within_seconds=int(receipt_within.total_seconds()),
                job_uid=uid,
            ),
            f"cash the cheque for {contract.quote}",
        )
        self.sheet.credit_notes.append(note)
        self.sheet.costs.held = note.held
        self._undo.append(("refund the credit note", self._refund))

        now = workflow.now()
        self._staged = workflow.patched(PATCH_STAGED_OUTPUTS)
        write_prefix = staging_prefix(uid) if self._staged else output_prefix(uid)
        self._write_par = await self._storage(
            StorageActivities.issue_bucket_write_par,
            IssueWriteParInput(
                job_uid=uid,
                prefix=write_prefix,
                expires_at=contract.deadline,
                url_seconds=self._config.write_url_seconds,
            ),
            "issue the bucket-write PAR",
        )
        self._record_par(ParKind.BUCKET_WRITE, write_prefix, now, contract.deadline)
        upload = await self._storage(
            StorageActivities.issue_object_par,
            IssueObjectParInput(
                kind=ParKind.UPLOAD, key=input_key(uid), now=now, expires_at=self._deadline
            ),
            "issue the upload PAR",
        )
        self._upload_url = upload.url
        self.sheet.pars.append(upload.metadata)
        self._record_par(
            ParKind.RUN,
            uid,
            now,
            self._deadline,
            token_sha256=hashlib.sha256(contract.run_token.encode()).hexdigest(),
        )
        self._undo.append(("delete the uploaded input", self._delete_uploads))
        await self._change(JobState.AWAITING_UPLOAD, "paid; PARs issued")

    async def _wait_for_trigger(self) -> bool:
        """True when the run was triggered; False on cancellation or at the deadline."""
        assert self._deadline is not None
        try:
            await workflow.wait_condition(
                lambda: self._triggered or self._cancel_reason is not None,
                timeout=max(self._deadline - workflow.now(), timedelta(seconds=1)),
                timeout_summary="expiry: undo everything unless the run was triggered",
            )
        except TimeoutError:
            pass
        async with self._lock:  # a trigger being checked right now finishes first
            return self._triggered

    async def _run_and_settle(self) -> None:
        contract, write_par = self._contract, self._write_par
        assert contract is not None and write_par is not None
        uid = self.sheet.uid
        self._run_started = workflow.now()
        self._close_pars(ParKind.UPLOAD, ParKind.RUN)
        await self._change(JobState.RUNNING, "the run was triggered")
        read = await self._storage(
            StorageActivities.issue_object_par,
            IssueObjectParInput(
                kind=ParKind.READ_INPUT,
                key=input_key(uid),
                now=workflow.now(),
                expires_at=contract.deadline,
            ),
            "issue the input read PAR",
        )
        self.sheet.pars.append(read.metadata)
        run = workflow.start_activity_method(
            ComputeActivities.run_calculation,
            RunRequest(
                contract=contract,
                input=ReadPar(
                    url=read.url, key=input_key(uid), expires_at=read.metadata.expires_at
                ),
                output=write_par,
            ),
            task_queue=contract.task_queue,
            start_to_close_timeout=timedelta(seconds=contract.max_runtime_seconds)
            + RUN_TRANSFER_ALLOWANCE,
            schedule_to_close_timeout=max(contract.deadline - workflow.now(), timedelta(minutes=1)),
            heartbeat_timeout=timedelta(seconds=self._config.run_heartbeat_seconds),
            retry_policy=(
                RUN_RETRY_UNTIL_DEADLINE if workflow.patched(PATCH_RUN_RETRIES) else RUN_RETRY
            ),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"run {contract.calculation}",
        )
        try:
            await workflow.wait_condition(lambda: run.done() or self._cancel_reason is not None)
        except asyncio.CancelledError:
            # The workflow itself was cancelled mid-run: stop the run, then settle as cancelled.
            self._cancel_reason = "the workflow was cancelled"
        if not run.done():
            run.cancel()
        result: RunResult | None = None
        try:
            result = await run
        except (ActivityError, asyncio.CancelledError) as exc:
            if self._cancel_reason is None:
                self.sheet.error = f"the compute service failed: {_cause(exc)}"
        if self._cancel_reason is not None:
            await self._settle(self._cancelled_usage(contract), JobState.CANCELLED)
            return
        if result is None:
            await self._settle(None, JobState.FAILED)
            return
        self.sheet.run_status = result.status.value
        self.sheet.usage = result.usage
        self.sheet.exit_status = result.exit_code
        self.sheet.stderr_tail = result.stderr_tail
        self.sheet.outputs = list(result.outputs)
        if result.status != RunStatus.SUCCEEDED:
            self.sheet.error = f"the calculation ended as {result.status.value}"
        await self._settle(result, OUTCOME_STATES[result.status])

    def _cancelled_usage(self, contract: ComputeContract) -> RunResult:
        """A cancelled run pays for the wall time it had, like a failed one (docs/billing.md)."""
        assert self._run_started is not None
        elapsed = (workflow.now() - self._run_started).total_seconds()
        self.sheet.usage = Usage(wall_seconds=elapsed, cpu_seconds=0)
        return RunResult(
            contract_id=contract.contract_id,
            status=RunStatus.FAILED,
            usage=Usage(wall_seconds=elapsed, cpu_seconds=0),
        )

    async def _settle(self, result: RunResult | None, final: JobState) -> None:
        """Receipt the cost (never above the hold), credit the provider, close the job."""
        contract = self._contract
        assert contract is not None
        await self._change(JobState.SETTLING, "settling the cost")
        # The persisted sheet no longer says running: the API grants no more writes from here.
        self._left_running_at = workflow.now()
        note = self.sheet.credit_notes[-1]
        charge = min(charge_for(contract, result), note.held)
        receipt = await self._ledger(
            LedgerActivities.receipt_credit_note,
            ReceiptInput(
                idempotency_key=f"{self.sheet.uid}:receipt", credit_note=note, amount=charge
            ),
            f"receipt {charge} and refund the rest",
        )
        self.sheet.costs.charged = receipt.paid
        self.sheet.costs.refunded = receipt.released
        # The receipt closed the credit note: there is nothing left to refund.
        self._undo = [step for step in self._undo if step[1] != self._refund]
        await self._release_contract()
        if final == JobState.CANCELLED:
            await self._delete_uploads()
            written = staging_prefix if self._staged else output_prefix
            await self._storage(
                StorageActivities.delete_objects,
                DeleteObjectsInput(prefix=written(self.sheet.uid)),
                "delete the cancelled run's outputs",
            )
            self.sheet.outputs = []
            await self._end(final, self._cancel_reason or "cancelled")
            return
        if self.sheet.outputs and self._staged:
            await self._seal_outputs()
        if self.sheet.outputs:
            retention = timedelta(seconds=self._config.retention_seconds)
            self.sheet.outputs_retained_until = workflow.now() + retention
            await self._issue_download_pars()
        await self._end(final, self.sheet.error or "the run succeeded")

    async def _seal_outputs(self) -> None:
        """Copy the outputs, checked against the run's report, to where no PAR can write; the
        owner downloads these copies, so a write granted earlier cannot change them."""
        uid = self.sheet.uid
        sealed = await workflow.execute_activity_method(
            StorageActivities.seal_outputs,
            SealOutputsInput(job_uid=uid, outputs=self.sheet.outputs),
            start_to_close_timeout=SEAL_TIMEOUT,
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
            summary="seal the outputs under the output prefix",
        )
        self.sheet.outputs = list(sealed.outputs)
        self.sheet.outputs_discarded = list(sealed.discarded)
        await self._storage(
            StorageActivities.delete_objects,
            DeleteObjectsInput(prefix=staging_prefix(uid)),
            "delete the staged outputs: the sealed copies are kept",
        )

    async def _cancel_in_flight(self) -> None:
        """Cancellation of the workflow itself, in whatever state it was."""
        if self.sheet.state in (JobState.RUNNING, JobState.SETTLING) and self._contract:
            await self._settle(self._cancelled_usage(self._contract), JobState.CANCELLED)
        else:
            await self._compensate()
            await self._end(JobState.CANCELLED, self._cancel_reason or "cancelled")

    # --- compensation -------------------------------------------------------------------------

    async def _compensate(self) -> None:
        """Undo what was done, last first. Each step is an idempotent activity."""
        while self._undo:
            _name, step = self._undo.pop()
            await step()

    async def _release_contract(self) -> None:
        if self._contract is None or (self.sheet.contract and self.sheet.contract.released):
            return
        await workflow.execute_activity_method(
            ComputeActivities.release_contract,
            ReleaseRequest(contract_id=self._contract.contract_id),
            task_queue=self._config.compute_task_queue,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=RETRY,
            summary="release the compute contract",
        )
        if self.sheet.contract is not None:
            self.sheet.contract.released = True

    async def _refund(self) -> None:
        for note in self.sheet.credit_notes:
            refund = await self._ledger(
                LedgerActivities.refund_credit_note,
                RefundInput(idempotency_key=f"{self.sheet.uid}:refund", credit_note=note),
                f"refund {note.held}",
            )
            self.sheet.costs.refunded += refund.released

    async def _delete_uploads(self) -> None:
        await self._storage(
            StorageActivities.delete_objects,
            DeleteObjectsInput(prefix=input_key(self.sheet.uid)),
            "delete the uploaded input",
        )

    async def _sweep_uploads_after_deadline(self) -> None:
        """A presigned upload URL cannot be revoked: once it has expired, delete once more."""
        if self._deadline is None or not self._upload_url:
            return
        remaining = self._deadline - workflow.now()
        if remaining > timedelta(0):
            await workflow.sleep(remaining, summary="wait for the upload PAR to expire")
        await self._delete_uploads()

    # --- after the end ------------------------------------------------------------------------

    async def _issue_download_pars(self) -> None:
        assert self.sheet.outputs_retained_until is not None
        now = workflow.now()
        expires_at = min(
            now + timedelta(seconds=self._config.download_par_seconds),
            self.sheet.outputs_retained_until,
        )
        pars: list[DownloadPar] = []
        for output in self.sheet.outputs:
            issued = await self._storage(
                StorageActivities.issue_object_par,
                IssueObjectParInput(
                    kind=ParKind.DOWNLOAD, key=output.key, now=now, expires_at=expires_at
                ),
                f"issue a download PAR for {output.key}",
            )
            pars.append(
                DownloadPar(
                    key=output.key,
                    size=output.size,
                    sha256=output.sha256,
                    url=issued.url,
                    expires_at=issued.metadata.expires_at,
                )
            )
            self.sheet.pars.append(issued.metadata)
        self._download_pars = pars

    def _keeps_outputs(self) -> bool:
        return bool(self.sheet.outputs) and not self.sheet.outputs_deleted

    def _writes_end(self) -> datetime | None:
        """When no PAR of this job can write any more (plus a margin for clocks), or None
        when it never had one that could."""
        ends: list[datetime] = []
        if self._upload_url and self._deadline is not None:
            ends.append(self._deadline)  # a presigned PUT cannot be revoked
        if self._write_par is not None and self._left_running_at is not None:
            # The API stopped granting PUTs once the sheet left running; the last one granted
            # lives at most write_url_seconds, and never past the capability.
            url_life = timedelta(seconds=self._config.write_url_seconds)
            ends.append(min(self._write_par.expires_at, self._left_running_at + url_life))
        return max(ends) + SWEEP_MARGIN if ends else None

    async def _clean_up_storage(self) -> None:
        """After the end, nothing a PAR wrote outlives the job: what is not kept goes now, the
        outputs when their retention ends, and ``jobs/<uid>/`` is swept once more when the
        last PAR that could write there has expired (late writes included)."""
        self._sweep_at = self._writes_end()
        if not self._keeps_outputs():
            await self._delete_job_storage("delete what the job stored: nothing is kept")
        await self._wait_and_clean_up()

    def _next_clean_up(self) -> datetime | None:
        due = [self._sweep_at] if self._sweep_at is not None else []
        if self._keeps_outputs():
            assert self.sheet.outputs_retained_until is not None
            due.append(workflow.now() if self._retention_cut else self.sheet.outputs_retained_until)
        return min(due) if due else None

    async def _wait_and_clean_up(self) -> None:
        """Wait for each clean-up in turn (continuing as new when Temporal suggests it)."""
        while (until := self._next_clean_up()) is not None:
            if workflow.now() < until:
                try:
                    await workflow.wait_condition(
                        lambda: workflow.info().is_continue_as_new_suggested(),
                        timeout=until - workflow.now(),
                        timeout_summary="the next clean-up of the job's storage",
                    )
                except TimeoutError:
                    continue
                except asyncio.CancelledError:
                    # A workflow cancel ends the retention now; the sweep still waits for the
                    # last PAR that could write to expire.
                    self._retention_cut = True
                    continue
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    self._start.model_copy(
                        update={
                            "carried": self.sheet,
                            "carried_config": self._policy,
                            "carried_sweep_at": self._sweep_at,
                        }
                    )
                )
            now = workflow.now()
            retained_until = self.sheet.outputs_retained_until
            if self._keeps_outputs() and (
                self._retention_cut or (retained_until is not None and now >= retained_until)
            ):
                await self._delete_outputs_after_retention()
            if self._sweep_at is not None and now >= self._sweep_at:
                await self._delete_job_storage("sweep late writes: every write PAR has expired")
                self._sweep_at = None

    async def _delete_job_storage(self, summary: str) -> None:
        """Delete everything under ``jobs/<uid>/`` but the outputs still retained."""
        uid = self.sheet.uid
        prefix = staging_prefix(uid) if self._keeps_outputs() else job_prefix(uid)
        await self._storage(
            StorageActivities.delete_objects, DeleteObjectsInput(prefix=prefix), summary
        )

    async def _retain_outputs(self) -> None:
        """Keep outputs until the retention ends (or the workflow is cancelled), then delete them
        and close. (Histories from before PATCH_STORAGE_SWEEP.)"""
        until = self.sheet.outputs_retained_until
        assert until is not None
        while workflow.now() < until:
            try:
                await workflow.wait_condition(
                    lambda: workflow.info().is_continue_as_new_suggested(),
                    timeout=until - workflow.now(),
                    timeout_summary="retention of the outputs ends",
                )
            except (TimeoutError, asyncio.CancelledError):
                break
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                self._start.model_copy(
                    update={"carried": self.sheet, "carried_config": self._policy}
                )
            )
        await self._delete_outputs_after_retention()

    async def _delete_outputs_after_retention(self) -> None:
        await self._storage(
            StorageActivities.delete_objects,
            DeleteObjectsInput(prefix=job_prefix(self.sheet.uid)),
            "delete the input and outputs: retention ended",
        )
        self.sheet.outputs_deleted = True
        self._download_pars = []
        self._close_pars(ParKind.DOWNLOAD)
        await self._persist("outputs deleted after retention")

    # --- helpers ------------------------------------------------------------------------------

    async def _ledger(self, activity: Callable, request: object, summary: str):  # type: ignore[no-untyped-def]
        """Run a ledger activity. During submission it is bounded and a failure rejects the job;
        afterwards (settlement, compensation) it retries until the ledger answers."""
        submitting = self.sheet.state == JobState.SUBMITTED
        return await self._step(
            workflow.execute_activity_method(
                activity,
                request,
                task_queue=self._config.ledger_task_queue,
                start_to_close_timeout=STEP_TIMEOUT,
                schedule_to_close_timeout=SUBMIT_STEP_TIMEOUT if submitting else None,
                retry_policy=RETRY,
                summary=summary,
            )
        )

    async def _storage(
        self,
        activity: Callable[[StorageActivities, ParamT], ResultT],
        request: ParamT,
        summary: str,
    ) -> ResultT:
        """Run a storage activity on this workflow's own task queue, retried until it succeeds."""
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=RETRY,
            summary=summary,
        )

    async def _step(self, call: Awaitable):  # type: ignore[no-untyped-def]
        """Await an activity; during submission any failure becomes a refusal of the job."""
        try:
            return await call
        except ActivityError as exc:
            if self.sheet.state == JobState.SUBMITTED:
                raise _Rejected(_cause(exc)) from None
            raise

    def _record_par(
        self,
        kind: ParKind,
        target: str,
        now: datetime,
        expires_at: datetime,
        *,
        token_sha256: str | None = None,
    ) -> None:
        self.sheet.pars.append(
            ParMetadata(
                kind=kind,
                target=target,
                issued_at=now,
                expires_at=expires_at,
                token_sha256=token_sha256,
            )
        )

    def _close_pars(self, *kinds: ParKind) -> None:
        now = workflow.now()
        for par in self.sheet.pars:
            if par.closed_at is None and (not kinds or par.kind in kinds):
                par.closed_at = min(now, par.expires_at)

    async def _change(self, state: JobState, note: str) -> None:
        self.sheet.state = state
        self.sheet.timeline.append(TimelineEntry(state=state, at=workflow.now(), note=note))
        if self._config.search_attributes:
            workflow.upsert_search_attributes([search_attributes.JOB_STATE.value_set(state.value)])
        await self._persist(note)

    async def _end(self, state: JobState, note: str) -> None:
        ran = state in (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT)
        keep = (ParKind.DOWNLOAD,) if ran else ()
        self._close_pars(*[kind for kind in ParKind if kind not in keep])
        if state in (JobState.CANCELLED, JobState.EXPIRED, JobState.REJECTED):
            self.sheet.error = self.sheet.error or note
        await self._change(state, note)

    async def _persist(self, note: str) -> None:
        workflow.set_current_details(details.current_details(self.sheet))
        await self._storage(
            StorageActivities.persist_sheet,
            PersistSheetInput(sheet=self.sheet),
            f"persist the sheet: {note}"[:200],
        )


def _cause(exc: BaseException) -> str:
    while isinstance(exc, ActivityError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, ApplicationError):
        return f"{exc.type}: {exc.message}"
    return str(exc) or type(exc).__name__
