"""Ledger activities: what the job sheet workflow calls to pay, and what account workflows need.

For the job sheet (task queue ``settings.task_queue_ledger``): ``cash_cheque``,
``receipt_credit_note``, ``refund_credit_note`` and ``verify_authorisation``. Each forwards an
idempotency key, so a retried activity changes nothing twice; business refusals are raised as
non-retryable ``ApplicationError`` with the ``type`` names of ``jobsheet.ledger.errors``.

For account workflows: ``lookup_user_keys`` (a local activity while cashing), ``operator_keys``
(a local activity while depositing), ``ledger_public_key`` (a local activity, once per account
run, to check credits), ``write_ledger_entries`` (the audit trail) and ``deliver_transfer`` (a
receipt's payment to the recipient's account, signed with the ledger workers' key).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from minio import Minio
from minio.error import S3Error
from temporalio import activity
from temporalio.client import Client

from jobsheet.authorisation import check_authorisation_terms, verify_authorisation_signature
from jobsheet.identity import Identity, PublicKeyRecord
from jobsheet.ledger import client as ledger
from jobsheet.ledger.errors import Refused
from jobsheet.ledger.key_cache import KEYS_TTL_SECONDS, UserKeys
from jobsheet.ledger.models import (
    AuditInput,
    AuthorisationVerdict,
    CashChequeInput,
    CreditInput,
    CreditNote,
    KeysLookupInput,
    OperatorKeys,
    ReceiptInput,
    ReceiptResult,
    RefundInput,
    RefundResult,
    Transfer,
    TransferOutcome,
    UseNonceInput,
    VerifyAuthorisationInput,
)
from jobsheet.ledger.orders import ledger_signer, sign_credit
from jobsheet.ledger.trust import trusted_operator_keys
from jobsheet.settings import Settings


class LedgerActivities:
    """Activities bound to one Temporal client, the settings and (for the audit trail) S3."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        s3: Minio | None = None,
        *,
        keys_ttl: float = KEYS_TTL_SECONDS,
    ) -> None:
        self._client = client
        self._settings = settings
        self._s3 = s3
        self._keys = UserKeys(client, keys_ttl)
        self._ledger_signer: Identity | None = None

    def _signer(self) -> Identity:
        """The ledger workers' key (read once; generated in the state dir when first needed)."""
        if self._ledger_signer is None:
            self._ledger_signer = ledger_signer(self._settings.ledger_private_key())
        return self._ledger_signer

    async def _keys_of(self, user: str) -> list[PublicKeyRecord]:
        return await self._keys.of(user)

    # --- for the job sheet workflow ------------------------------------------------------

    @activity.defn
    async def cash_cheque(self, request: CashChequeInput) -> CreditNote:
        """Cash a cheque: verify it and place a hold on the drawer's account."""
        return await ledger.cash_cheque(self._client, request)

    @activity.defn
    async def receipt_credit_note(self, request: ReceiptInput) -> ReceiptResult:
        """Receipt ``amount`` of a credit note; the recipient's account is credited."""
        return await ledger.receipt(self._client, request)

    @activity.defn
    async def refund_credit_note(self, request: RefundInput) -> RefundResult:
        """Release a credit note's whole hold back to the payer."""
        return await ledger.refund(self._client, request)

    @activity.defn
    async def verify_authorisation(self, request: VerifyAuthorisationInput) -> AuthorisationVerdict:
        """Check an authorisation against exactly ``resource`` and consume it (at most once).

        The nonce is consumed as soon as the signature verifies, before the terms (signing
        period, resource, age) are checked: an authorisation refused for its terms is used up
        too, so nobody can present it again later, in this spelling or any other.
        """
        auth = request.authorisation
        keys = await ledger.user_keys(self._client, auth.user)
        max_age = request.max_age_seconds or self._settings.authorisation_max_age_seconds
        try:
            key = verify_authorisation_signature(auth, keys=keys)
        except Refused as exc:
            raise exc.to_application_error() from None
        await ledger.use_nonce(
            self._client,
            auth.user,
            UseNonceInput(
                idempotency_key=request.idempotency_key, nonce=auth.nonce, issued_at=auth.issued_at
            ),
        )
        try:
            check_authorisation_terms(
                auth,
                key=key,
                resource=request.resource,
                now=datetime.now(UTC),
                max_age=timedelta(seconds=max_age),
            )
        except Refused as exc:
            raise exc.to_application_error() from None
        return AuthorisationVerdict(
            user=auth.user,
            resource=auth.resource,
            key_id=auth.key_id,
            verified_at=datetime.now(UTC),
        )

    # --- for account workflows --------------------------------------------------------------

    @activity.defn
    async def lookup_user_keys(self, request: KeysLookupInput) -> list[PublicKeyRecord]:
        """The public keys registered for a user, with their signing periods.

        Cached for ``keys_ttl`` seconds per worker, so a burst of cashings asks the registry
        once; a revocation therefore takes effect for cheques within that time.
        """
        return await self._keys_of(request.user)

    @activity.defn
    async def operator_keys(self) -> OperatorKeys:
        """The operator this worker trusts to sign deposits (its own settings), and their keys:
        the ones its configuration names (jobsheet/ledger/trust.py), else the registry's
        (cached like ``lookup_user_keys``)."""
        user = self._settings.operator_user
        trusted = trusted_operator_keys(self._settings)
        if trusted is not None:
            return OperatorKeys(user=user, keys=trusted)
        return OperatorKeys(user=user, keys=await self._keys_of(user))

    @activity.defn
    async def ledger_public_key(self) -> PublicKeyRecord:
        """The public half of the key that signs credits, for accounts to verify them with."""
        return self._signer().public_record()

    @activity.defn
    async def write_ledger_entries(self, request: AuditInput) -> int:
        """Write each entry once as an immutable JSON object; return how many were new."""
        if self._s3 is None:
            raise RuntimeError("the ledger worker has no object store for the audit trail")
        s3, bucket = self._s3, self._settings.bucket

        def write() -> int:
            written = 0
            for entry in request.entries:
                try:
                    s3.stat_object(bucket, entry.object_key)
                    continue
                except S3Error as exc:
                    if exc.code not in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                        raise
                data = entry.model_dump_json().encode()
                s3.put_object(
                    bucket,
                    entry.object_key,
                    io.BytesIO(data),
                    len(data),
                    content_type="application/json",
                )
                written += 1
            return written

        return await asyncio.to_thread(write)

    @activity.defn
    async def deliver_transfer(self, transfer: Transfer) -> TransferOutcome:
        """Credit the recipient's account with a receipt's payment (once per transfer id),
        signed with the ledger workers' key so that the recipient accepts it."""
        request = CreditInput(
            idempotency_key=transfer.transfer_id,
            from_account=transfer.from_account,
            amount=transfer.amount,
            reference=transfer.credit_note_uid,
            job_uid=transfer.job_uid,
        )
        signed = sign_credit(self._signer(), request, account=transfer.to_account)
        await ledger.credit(self._client, transfer.to_account, signed)
        return TransferOutcome(delivered=True)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for a worker's ``activities=``."""
        return [
            self.cash_cheque,
            self.receipt_credit_note,
            self.refund_credit_note,
            self.verify_authorisation,
            self.lookup_user_keys,
            self.operator_keys,
            self.ledger_public_key,
            self.write_ledger_entries,
            self.deliver_transfer,
        ]
