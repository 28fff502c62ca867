"""Ledger activities: what account workflows need. (The job sheet pays through its own steps,
``activities/jobs.py``, which call the accounts with idempotency keys.)

For account workflows: ``lookup_user_keys`` (the owner's keys, to check cheques with),
``operator_keys`` (a local activity while depositing), ``ledger_public_key`` (a local activity,
once per account, to check credits and notes' ends), ``write_ledger_entries`` (the audit trail) and ``deliver_transfer`` (a
receipt's payment to the recipient's account, signed with the ledger workers' key),
``start_credit_notes`` (the workflows that keep notes just issued); for credit note workflows:
``sign_note_end`` (a note's end, signed for its paying account).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from minio import Minio
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from jobsheet.contracts.refusals import refusal
from jobsheet.core.settings import Settings
from jobsheet.identity.key_cache import KEYS_TTL_SECONDS, UserKeys
from jobsheet.identity.keys import Identity, PublicKeyRecord
from jobsheet.identity.models import KeysLookupInput, OperatorKeys
from jobsheet.identity.trust import trusted_operator_keys
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.errors import (
    BAD_SIGNATURE,
    UNKNOWN_CREDIT_NOTE,
)
from jobsheet.ledger.models import (
    CREDIT_NOTE_WORKFLOW,
    AuditInput,
    CreditInput,
    HoldClosed,
    LedgerEntry,
    NoteInput,
    SignNoteEndInput,
    StartNotesInput,
    StartNotesResult,
    Transfer,
    TransferOutcome,
    credit_note_workflow_id,
)
from jobsheet.ledger.orders import (
    ledger_signer,
    note_verifies,
    sign_credit,
    sign_hold_closed,
    sign_note,
)
from jobsheet.telemetry.job_metrics import count_ledger_entries


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
        the ones its configuration names (jobsheet/identity/trust.py), else the registry's
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
    async def start_credit_notes(self, request: StartNotesInput) -> StartNotesResult:
        """Start the workflows that keep credit notes their account issued, each with its start
        input signed by the ledger workers (a background activity of the account).

        A note's workflow id names its cheque, and an id once used is never used again: a note
        already there for another cashing is the cheque cashed before, reported back so that
        the account takes the hold back; the same note again is an earlier attempt of this one.
        """
        outcomes = await asyncio.gather(*(self._start_note(note) for note in request.notes))
        return StartNotesResult(
            already_cashed=[
                n.note.uid
                for n, started in zip(request.notes, outcomes, strict=True)
                if not started
            ]
        )

    async def _start_note(self, request: NoteInput) -> bool:
        """Start one note's workflow, delayed until its ``receipt_by``: it costs no workflow
        task until then unless a receipt or refund wakes it. False if the cheque's note exists
        for another cashing."""
        note = request.note
        try:
            await self._client.start_workflow(
                CREDIT_NOTE_WORKFLOW,
                sign_note(self._signer(), request),
                id=credit_note_workflow_id(note.uid, note.account),
                task_queue=activity.info().task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                start_delay=max(note.receipt_by - datetime.now(UTC), timedelta(0)),
                static_summary=f"credit note {note.uid}: {note.held} held for {note.recipient}",
            )
        except WorkflowAlreadyStartedError:
            started = await ledger.note_start_input(self._client, note.uid, note.account)
            return started is not None and (started.note, started.cash_key) == (
                note,
                request.cash_key,
            )
        return True

    @activity.defn
    async def sign_note_end(self, request: SignNoteEndInput) -> HoldClosed:
        """A credit note's end signed for its paying account (a local activity of the note's
        workflow), only for a note whose start input the ledger workers signed, and only for
        that note."""
        signer = self._signer()
        if not note_verifies(request.note, key=signer.public_record()):
            raise refusal(f"credit note {request.note.note.uid} was not issued", BAD_SIGNATURE)
        if request.closed.note != request.note.note:
            raise refusal("the end names another credit note", UNKNOWN_CREDIT_NOTE)
        return sign_hold_closed(signer, request.closed)

    @activity.defn
    async def write_ledger_entries(self, request: AuditInput) -> int:
        """Write each entry as an immutable JSON object (its key names its account and
        sequence number; writing it again on a retry writes the same bytes); return how many."""
        if self._s3 is None:
            raise RuntimeError("the ledger worker has no object store for the audit trail")
        s3, bucket = self._s3, self._settings.bucket

        def write(entry: LedgerEntry) -> None:
            data = entry.model_dump_json().encode()
            s3.put_object(
                bucket,
                entry.object_key,
                io.BytesIO(data),
                len(data),
                content_type="application/json",
            )

        await asyncio.gather(*(asyncio.to_thread(write, entry) for entry in request.entries))
        count_ledger_entries(request.entries)  # money held, charged, refunded: once per line
        return len(request.entries)

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
            self.start_credit_notes,
            self.sign_note_end,
            self.write_ledger_entries,
            self.deliver_transfer,
        ]
