"""Ledger activities: what account workflows need. (The job sheet pays through its own steps,
``activities/jobs.py``, which call the accounts with idempotency keys.)

For account workflows: ``lookup_user_keys`` (the owner's keys, to check cheques with),
``operator_keys`` (a local activity while depositing), ``ledger_public_key`` (a local activity,
once per account, to check credits and notes' ends), ``write_ledger_entries`` (the audit trail) and ``deliver_transfer`` (a
receipt's payment to the recipient's account, signed with the ledger workers' key); for credit
note workflows: ``sign_hold_closed`` (a note's end, signed for its paying account).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

from minio import Minio
from minio.error import S3Error
from temporalio import activity
from temporalio.client import Client

from jobsheet.identity import Identity, PublicKeyRecord
from jobsheet.ledger import client as ledger
from jobsheet.ledger.key_cache import KEYS_TTL_SECONDS, UserKeys
from jobsheet.ledger.models import (
    AuditInput,
    CreditInput,
    HoldClosed,
    KeysLookupInput,
    OperatorKeys,
    Transfer,
    TransferOutcome,
)
from jobsheet.ledger.orders import ledger_signer, sign_credit, sign_hold_closed
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
    async def sign_hold_closed(self, closed: HoldClosed) -> HoldClosed:
        """A credit note's end signed with the ledger workers' key, for its paying account (a
        local activity of the note's workflow)."""
        return sign_hold_closed(self._signer(), closed)

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
            self.lookup_user_keys,
            self.operator_keys,
            self.ledger_public_key,
            self.sign_hold_closed,
            self.write_ledger_entries,
            self.deliver_transfer,
        ]
