"""The job sheet's short steps, run as local activities on the jobs worker.

Each is a few milliseconds of work or one call to another workflow (an account, the user
registry, a compute service's contract book), so the job's workflow runs them inside its own
workflow task: one marker event each instead of six events and a round trip through a task
queue. Every one is idempotent (idempotency keys, contract ids, same-bytes writes), so a retried
workflow task that runs them again changes nothing twice. Business refusals are non-retryable
``ApplicationError`` whose ``type`` names the refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from minio import Minio
from temporalio import activity
from temporalio.client import Client

from activities import contract_book
from activities.storage import par_lifetime
from jobsheet.compute.config import (
    ComputeConfig,
    load_compute_config,
)
from jobsheet.compute.contracts import ContractRefused, contract_for
from jobsheet.compute.models import ComputeContract, ContractState, ReleaseResult
from jobsheet.contracts.refusals import Refusal, refusal
from jobsheet.core.objectstore import compute_presign_client, internal_client, presign_client
from jobsheet.core.settings import Settings
from jobsheet.identity import registry
from jobsheet.identity.authorisation import (
    Authorisation,
    check_authorisation_terms,
    verify_authorisation_signature,
)
from jobsheet.identity.key_cache import UserKeys
from jobsheet.identity.models import (
    AuthorisationVerdict,
    UseNonceInput,
    VerifyAuthorisationInput,
)
from jobsheet.jobs import cleanup
from jobsheet.jobs.messages import (
    FinishInput,
    IssuedPar,
    JobConfig,
    Prepared,
    PrepareInput,
    ReleaseInput,
    ReserveInput,
    StartRunInput,
    SubmissionPars,
    SubmissionParsInput,
)
from jobsheet.jobs.models import ParKind, ParMetadata, input_key, job_uid_for
from jobsheet.jobs.store import write_sheet
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.errors import PAYMENT_VOIDED
from jobsheet.ledger.models import (
    CashChequeInput,
    CreditNote,
    ReceiptInput,
    ReceiptResult,
    RefundInput,
    RefundResult,
)
from jobsheet.pars.write import issue_write_par


class JobActivities:
    """The job sheet's local activities, bound to the jobs worker's client and settings."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._bucket = settings.bucket
        self._s3: Minio = internal_client(settings)
        self._signer: Minio = presign_client(settings)
        self._compute_signer: Minio = compute_presign_client(settings)
        self._keys = UserKeys(client)
        self._config: tuple[float, ComputeConfig] | None = None

    def _compute_config(self) -> ComputeConfig:
        """The operator's calculations file, read again when it changes."""
        path: Path = self._settings.calculations_file
        mtime = path.stat().st_mtime
        if self._config is None or self._config[0] != mtime:
            self._config = (mtime, load_compute_config(path))
        return self._config[1]

    # --- submission ---------------------------------------------------------------------------

    @activity.defn
    async def prepare_job(self, request: PrepareInput) -> Prepared:
        """Check the job against the operator's calculations and the user's signature, then draft
        its contract: quote, run-by time (the job's expiry), deadline and run token. No nonce is
        consumed: the job's uid is the signature's, so a replay reaches the same job."""
        job = request.request
        try:
            config = self._compute_config()
        except (OSError, ValueError) as exc:
            raise refusal(
                f"the operator's calculations cannot be read: {exc}", "NoPolicy"
            ) from None
        if request.authorisation.user != job.user:
            raise refusal("the authorisation is not by the user named in the request", "WrongUser")
        if request.uid != job_uid_for(request.authorisation.signature):
            # One authorisation, one job: its uid is derived from the signature, and Temporal
            # refuses a second workflow with that id, so no nonce needs consuming here.
            raise refusal(
                "a job's uid is derived from its authorisation's signature; this one is not",
                "WrongJobUid",
            )
        settings = self._settings
        now = (request.now or datetime.now(UTC)).replace(microsecond=0)
        task_queue = settings.compute_task_queue(job.service)
        try:
            contract = contract_for(
                config,
                job_uid=request.uid,
                service=job.service,
                calculation=job.calculation,
                parameters=job.parameters,
                task_queue=task_queue,
                run_by=now + timedelta(seconds=settings.job_expiry_seconds),
                now=now,
            )
        except ContractRefused as exc:
            raise refusal(exc.message, exc.kind) from None
        # Before any money moves: a refused authorisation holds nothing, not even for a moment.
        await self._verify(request.authorisation, resource=job.fingerprint())
        policy = JobConfig(
            ledger_task_queue=settings.task_queue_ledger,
            compute_task_queue=task_queue,
            provider_account=settings.provider_account,
            gateway_url=settings.api_url,
            expiry_seconds=settings.job_expiry_seconds,
            download_par_seconds=settings.download_par_seconds,
            retention_seconds=settings.retention_seconds,
            search_attributes=settings.job_search_attributes,
            write_url_seconds=settings.write_url_seconds,
        )
        capacity = config.service(job.service).max_open_contracts
        return Prepared(policy=policy, contract=contract, max_open_contracts=capacity)

    async def _verify(
        self,
        authorisation: Authorisation,
        *,
        resource: str,
        consume: VerifyAuthorisationInput | None = None,
    ) -> AuthorisationVerdict:
        """Check the authorisation's signature against the user's keys, consume its nonce when
        ``consume`` says so (before the terms: a refused one is used up too), then its terms."""
        try:
            keys = await self._keys.of(authorisation.user)
            key = verify_authorisation_signature(authorisation, keys=keys)
            if consume is not None:
                await registry.use_nonce(
                    self._client,
                    authorisation.user,
                    UseNonceInput(
                        idempotency_key=consume.idempotency_key,
                        nonce=authorisation.nonce,
                        issued_at=authorisation.issued_at,
                    ),
                )
            check_authorisation_terms(
                authorisation,
                key=key,
                resource=resource,
                now=datetime.now(UTC),
                max_age=timedelta(
                    seconds=(consume and consume.max_age_seconds)
                    or self._settings.authorisation_max_age_seconds
                ),
            )
        except Refusal as exc:
            raise exc.to_application_error() from None
        return AuthorisationVerdict(
            user=authorisation.user,
            resource=authorisation.resource,
            key_id=authorisation.key_id,
            verified_at=datetime.now(UTC),
        )

    @activity.defn
    async def verify_cancel(self, request: VerifyAuthorisationInput) -> AuthorisationVerdict:
        """Check an authorisation against exactly ``resource`` (the owner's cancellation) and
        consume it: at most once per use, even when its terms then refuse it."""
        return await self._verify(request.authorisation, resource=request.resource, consume=request)

    @activity.defn
    async def reserve_contract(self, request: ReserveInput) -> ComputeContract:
        """Have the service's contract book hold the drafted contract (the first draft held for
        this job wins: a retry gets the same contract and run token). A full service refuses
        at once (``ServiceAtCapacity``), naming itself and its capacity."""
        contract = request.contract
        record = await contract_book.reserve(
            self._client, contract, max_open_contracts=request.max_open_contracts
        )
        if record.state != ContractState.HELD:
            raise refusal(
                f"contract {contract.contract_id} was already {record.state.value}",
                "ContractNotHeld",
            )
        return record.contract

    @activity.defn
    async def release_contract(self, request: ReleaseInput) -> ReleaseResult:
        """Free the contract's slot; releasing twice, or an unknown contract, is harmless."""
        return await contract_book.release(
            self._client, request.contract_id, task_queue=request.task_queue
        )

    @activity.defn
    async def cash_cheque(self, request: CashChequeInput) -> CreditNote:
        """Cash the cheque on the account it draws on: a hold, and its credit note."""
        return await ledger.cash_cheque(self._client, request)

    @activity.defn
    async def receipt_credit_note(self, request: ReceiptInput) -> ReceiptResult:
        """Receipt ``amount`` of the credit note; the rest goes back to the payer."""
        return await ledger.receipt(self._client, request)

    @activity.defn
    async def refund_credit_note(self, request: RefundInput) -> RefundResult:
        """Give the whole hold back; a hold already closed (or never placed) refunds nothing."""
        return await ledger.refund(self._client, request)

    @activity.defn
    def issue_submission_pars(self, request: SubmissionParsInput) -> SubmissionPars:
        """The bucket-write PAR for the compute service and the owner's upload PAR."""
        now = datetime.now(UTC).replace(microsecond=0)
        write = issue_write_par(
            self._settings,
            job_uid=request.uid,
            prefix=request.write_prefix,
            expires_at=request.write_until,
            url_seconds=request.url_seconds,
        )
        upload = self._presign(
            self._signer, ParKind.UPLOAD, input_key(request.uid), now, request.upload_until
        )
        return SubmissionPars(write_par=write, upload=upload, issued_at=now)

    # --- the run and the end ------------------------------------------------------------------

    @activity.defn
    async def start_run(self, request: StartRunInput) -> IssuedPar:
        """Check that the job's hold stands, persist the running sheet (the API grants bucket
        writes only while it says running) and presign the compute service's read of the input.

        A hold its account took back (the cheque had been cashed before, long ago) pays for no
        run: refused ``PaymentVoided``, and the job ends without running.
        """
        for note in request.sheet.credit_notes:
            if not await ledger.note_stands(self._client, note):
                raise refusal(
                    f"the hold {note.uid} paying for job {request.sheet.uid} was taken back: "
                    f"cheque {note.cheque_uid} had been cashed before",
                    PAYMENT_VOIDED,
                )
        await asyncio.to_thread(write_sheet, self._s3, self._bucket, request.sheet)
        now = datetime.now(UTC).replace(microsecond=0)
        return self._presign(
            self._compute_signer,
            ParKind.READ_INPUT,
            input_key(request.sheet.uid),
            now,
            request.input_until,
        )

    @activity.defn
    def finish_job(self, request: FinishInput) -> int:
        """Persist the ended sheet, delete what the job does not keep, and leave a marker for
        each later clean-up; returns how many objects were deleted now."""
        return cleanup.finish(self._s3, self._bucket, request.sheet, request.cleanups)

    def _presign(
        self, signer: Minio, kind: ParKind, key: str, now: datetime, expires_at: datetime
    ) -> IssuedPar:
        lifetime = par_lifetime(now, expires_at)
        if kind == ParKind.UPLOAD:
            url = signer.presigned_put_object(self._bucket, key, expires=lifetime)
        else:
            url = signer.presigned_get_object(self._bucket, key, expires=lifetime)
        return IssuedPar(
            url=url,
            metadata=ParMetadata(kind=kind, target=key, issued_at=now, expires_at=now + lifetime),
        )

    def all(self) -> list[Callable[..., Any]]:
        """Every job step, for the jobs worker's ``activities=``."""
        return [
            self.prepare_job,
            self.verify_cancel,
            self.reserve_contract,
            self.release_contract,
            self.cash_cheque,
            self.receipt_credit_note,
            self.refund_credit_note,
            self.issue_submission_pars,
            self.start_run,
            self.finish_job,
        ]
