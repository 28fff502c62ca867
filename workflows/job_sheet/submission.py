"""Submission: check the job, hold its contract and its money, hand out its PARs.

All of it runs inside the job's first workflow task, as local activities: once the job and its
authorisation are checked, the contract and the cheque go to their workflows at the same time (a
refusal of either unwinds the other). Each compensating step is pushed onto the saga
*before* its action, because an action whose answer is lost may still have happened.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from jobsheet.compute.models import ComputeContract
    from jobsheet.jobs.messages import (
        Prepared,
        PrepareInput,
        ReleaseInput,
        ReserveInput,
        SubmissionPars,
        SubmissionParsInput,
    )
    from jobsheet.jobs.models import ContractSummary, JobState, ParKind, staging_prefix
    from jobsheet.ledger.errors import CREDIT_NOTE_CLOSED, UNKNOWN_CREDIT_NOTE
    from jobsheet.ledger.models import CashChequeInput, CreditNote, RefundInput

from workflows.job_sheet import steps
from workflows.job_sheet.state import REFUND_HOLD, RELEASE_CONTRACT, JobRun

# Settlement must end before the credit note's automatic refund: hold it this long past the run.
RECEIPT_MARGIN = timedelta(hours=1)


class Rejected(Exception):
    """The job cannot go ahead (a refusal, or a service that did not answer in time)."""


async def submit(job: JobRun) -> None:
    """Pay for the job and issue its PARs, or raise :class:`Rejected` with everything undone."""
    try:
        await _submit(job)
    except steps.StepFailed as exc:
        job.sheet.error = steps.cause(exc)
        await job.saga.unwind()
        raise Rejected(job.sheet.error) from None


async def _submit(job: JobRun) -> None:
    request = job.start.request
    prepare = PrepareInput(
        uid=job.uid,
        request=request,
        authorisation=job.start.authorisation,
        now=workflow.now(),
    )
    prepared: Prepared = await steps.local(
        JobActivities.prepare_job,
        prepare,
        "check the job and the user's signature; draft its contract",
        bounded=True,
    )
    job.policy, draft = prepared.policy, prepared.contract
    job.sheet.expires_at = draft.run_by
    job.sheet.costs.quoted = draft.quote
    cash = CashChequeInput(
        idempotency_key=f"{job.uid}:cash",
        cheque=job.start.cheque,
        spend=draft.quote,
        recipient=job.config.provider_account,
        resource=request.fingerprint(),
        receipt_within_seconds=int(
            (draft.deadline + RECEIPT_MARGIN - workflow.now()).total_seconds()
        ),
        job_uid=job.uid,
    )
    job.saga.push(RELEASE_CONTRACT, lambda: release_contract(job, draft.contract_id))
    job.saga.push(REFUND_HOLD, lambda: refund_hold(job, cash))
    reserved: ComputeContract | BaseException
    cashed: CreditNote | BaseException
    reserved, cashed = await asyncio.gather(
        steps.local(
            JobActivities.reserve_contract,
            ReserveInput(contract=draft, max_open_contracts=prepared.max_open_contracts),
            f"hold a {draft.calculation} contract on {draft.service}",
            bounded=True,
        ),
        steps.local(
            JobActivities.cash_cheque, cash, f"cash the cheque for {draft.quote}", bounded=True
        ),
        return_exceptions=True,
    )
    if isinstance(cashed, CreditNote):
        _record_hold(job, cashed)  # so that a refund needs no second cashing
    elif isinstance(cashed, steps.StepFailed) and steps.refusal_type(cashed) is not None:
        job.saga.discard(REFUND_HOLD)  # refused: nothing was held
    for outcome in (reserved, cashed):
        if isinstance(outcome, BaseException):
            raise outcome
    assert isinstance(reserved, ComputeContract)
    _record_contract(job, reserved)
    pars: SubmissionPars = await steps.local(
        JobActivities.issue_submission_pars,
        SubmissionParsInput(
            uid=job.uid,
            write_prefix=staging_prefix(job.uid),
            write_until=reserved.deadline,
            upload_until=job.deadline,
            url_seconds=job.config.write_url_seconds,
        ),
        "issue the upload and bucket-write PARs",
        bounded=True,
    )
    _record_pars(job, pars)
    if job.cancel_reason is None:
        job.change(JobState.AWAITING_UPLOAD, "paid; PARs issued")


def _record_contract(job: JobRun, contract: ComputeContract) -> None:
    """The contract the book holds: the first drafted for this job, should a retried step have
    drafted another (its run-by time is the job's deadline)."""
    job.contract = contract
    job.sheet.expires_at = contract.run_by
    job.sheet.contract = ContractSummary(
        **contract.model_dump(include=set(ContractSummary.model_fields) - {"released"})
    )


def _record_hold(job: JobRun, note: CreditNote) -> None:
    job.sheet.credit_notes = [note]
    job.sheet.costs.held = note.held


def _record_pars(job: JobRun, pars: SubmissionPars) -> None:
    contract = job.held_contract
    job.write_par, job.upload_url = pars.write_par, pars.upload.url
    job.record_par(
        ParKind.BUCKET_WRITE, pars.write_par.prefix, pars.issued_at, pars.write_par.expires_at
    )
    job.sheet.pars.append(pars.upload.metadata)
    job.record_par(
        ParKind.RUN,
        job.uid,
        pars.issued_at,
        job.deadline,
        token_sha256=hashlib.sha256(contract.run_token.encode()).hexdigest(),
    )


# --- compensation -------------------------------------------------------------------------------


async def release_contract(job: JobRun, contract_id: str) -> None:
    """Free the compute slot (releasing twice, or a contract never held, changes nothing)."""
    if job.sheet.contract is not None and job.sheet.contract.released:
        return
    await steps.local(
        JobActivities.release_contract,
        ReleaseInput(contract_id=contract_id, task_queue=job.config.compute_task_queue),
        "release the compute contract",
    )
    if job.sheet.contract is not None:
        job.sheet.contract.released = True


async def refund_hold(job: JobRun, cash: CashChequeInput) -> None:
    """Give the hold back. When the cashing's answer never came, ask again with the same key:
    the account answers with the hold it placed (or the refusal), and that hold is refunded."""
    if job.sheet.credit_notes:
        note = job.sheet.credit_notes[-1]
    else:
        try:
            note = await steps.local(
                JobActivities.cash_cheque, cash, "ask the account whether the cheque was cashed"
            )
        except steps.StepFailed as exc:
            if steps.refusal_type(exc) is not None:
                return  # the cheque was refused: nothing is held
            raise
        _record_hold(job, note)
    try:
        refund = await steps.local(
            JobActivities.refund_credit_note,
            RefundInput(idempotency_key=f"{job.uid}:refund", credit_note=note),
            f"refund {note.held}",
        )
    except steps.StepFailed as exc:
        if steps.refusal_type(exc) in (CREDIT_NOTE_CLOSED, UNKNOWN_CREDIT_NOTE):
            return  # already refunded (by the account's own timer) or receipted
        raise
    job.sheet.costs.refunded += refund.released
