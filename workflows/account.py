"""One account's ledger as an entity workflow (``account-<uid>``), wrapping the pure state machine.

Updates (each with a validator that sheds doomed requests before they reach history) deposit,
set the overdraft limit, cash cheques into holds, receipt and refund credit notes, and credit
incoming transfers. Those that add money or let the account spend money it does not have check a
signature a bare Temporal client cannot make: a deposit or an overdraft limit must be signed by
the operator the worker trusts (its keys from the registry, by a local activity), a credit by
the ledger workers' key (its public half fetched once and carried across continue-as-new). For
the same reason a new run takes state only from its own continue-as-new, and opens with no
overdraft whatever its start input says.
Two background loops keep the promises that outlive a request: the expiry loop refunds every hold
still open at its ``receipt_by`` (a durable timer), and the delivery loop writes each ledger entry
to the object store once and carries receipted money to the recipient's account. The workflow
continues-as-new after a bounded number of operations, carrying its whole state.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # Native Ed25519 code imports ``cryptography.exceptions`` when a signature is bad; it must
    # find the process's module, not a sandboxed copy (re-initialising it aborts the process).
    import cryptography.exceptions
    import cryptography.hazmat.bindings._rust  # noqa: F401

    from activities.ledger import LedgerActivities
    from jobsheet.contracts.refusals import Refusal, refusal
    from jobsheet.identity.keys import PublicKeyRecord
    from jobsheet.identity.models import KeysLookupInput, OperatorKeys
    from jobsheet.ledger.calls import ACCOUNT_WORKFLOW, OpenAccountInput
    from jobsheet.ledger.cheque import Cheque
    from jobsheet.ledger.errors import BAD_SIGNATURE, FORGED_STATE
    from jobsheet.ledger.models import (
        HOLD_CLOSED_SIGNAL,
        AuditInput,
        BalanceView,
        CashChequeInput,
        CreditInput,
        CreditNote,
        DepositInput,
        HoldClosed,
        LedgerEntry,
        NoteInput,
        NoteKeeper,
        OverdraftInput,
        ReceiptInput,
        ReceiptResult,
        RefundInput,
        RefundResult,
        StartNotesInput,
        Statement,
        Transfer,
    )
    from jobsheet.ledger.orders import (
        check_credit,
        check_deposit,
        check_overdraft,
        credit_verifies,
        hold_closed_verifies,
    )
    from jobsheet.ledger.state import ZERO, AccountState

AUDIT_BATCH = 100
DELIVERY_BATCH = 20
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
DELIVERY_BACKOFF = timedelta(seconds=30)
KEY_LOOKUP_TIMEOUT = timedelta(seconds=10)
SIGNED_ORDERS_PATCH = "ledger-signed-orders"
"""Deposits and credits are checked for signatures from this patch on (older histories: not)."""
OWNER_KEYS_ONCE_PATCH = "account-owner-keys-once"
"""Cheques cashed together share one lookup of the owner's keys, kept OWNER_KEYS_TTL."""
OWNER_KEYS_TTL = timedelta(seconds=1)
NOTES_PATCH = "account-notes-as-workflows"
"""From this patch on, each cashing's credit note is a workflow of its own with its own refund
timer, started by an activity (the account keeps totals only), and the owner's keys are carried in the account's state and
refreshed by a regular activity, so no cashing waits on a local activity. A run that cashed
before the patch keeps its holds in its state until it continues as new."""
OWNER_KEYS_FRESH = timedelta(seconds=5)
"""Carried owner's keys older than this are looked up again in the background: a revocation
stops cheques signed after it within this time (plus a lookup)."""
OWNER_KEYS_MAX_AGE = timedelta(seconds=60)
"""Older carried keys check no cheque: it waits for a lookup (the registry may be down)."""
OWNER_KEYS_MIN_INTERVAL = timedelta(seconds=1)
"""A cheque naming a key the carried keys lack looks the keys up again, at most this often."""
NOTE_START_TIMEOUT = timedelta(seconds=30)
NOTE_START_BATCH = 100
START_CHECKS_PATCH = "ledger-start-checks"
"""From this patch on, a run takes carried state only from its own continue-as-new, and a new
account opens with no overdraft (only the operator's signed order sets one)."""


def _orders_are_signed() -> bool:
    """Whether the deposit or credit being handled must be signed: yes on every run that meets
    the patch live. ``patched`` is fixed for a whole run once asked, and a run that began before
    the patch answers no while it replays its old updates, so there each update newer than the
    patch asks again under its own id (one marker each, until that run continues as new)."""
    if workflow.patched(SIGNED_ORDERS_PATCH):
        return True
    update = workflow.current_update_info()
    return update is None or workflow.patched(f"{SIGNED_ORDERS_PATCH}/{update.id}")


@workflow.defn(name=ACCOUNT_WORKFLOW)
class AccountWorkflow:
    """The serialised ledger of one account."""

    @workflow.init
    def __init__(self, request: OpenAccountInput) -> None:
        self._forged = False
        state, ledger_key, overdraft = request.state, request.ledger_key, request.overdraft_limit
        if workflow.patched(START_CHECKS_PATCH):
            # Only this account's own continue-as-new may carry state or the ledger key: from
            # anyone else they would be a made-up balance or a key to sign credits with.
            carried = workflow.info().continued_run_id is not None
            self._forged = not carried and (state is not None or ledger_key is not None)
            if not carried:
                state, ledger_key, overdraft = None, None, ZERO
        self._state = state or AccountState(
            account=request.account, owner=request.owner, overdraft_limit=overdraft
        )
        self._limit = request.continue_as_new_after
        self._operations = 0
        self._timer_target = self._state.next_receipt_by()
        self._holds_changed = 0
        self._stopping = False
        self._ledger_key_record = ledger_key
        self._owner_keys_cache: list[PublicKeyRecord] = []
        self._owner_keys_at: datetime | None = None
        self._owner_keys_lookup: asyncio.Task[list[PublicKeyRecord]] | None = None

    @workflow.run
    async def run(self, request: OpenAccountInput) -> None:
        if self._forged:
            raise ApplicationError(
                f"account {request.account} was started with carried state, which only its own "
                "continue-as-new may bring; open accounts empty",
                type=FORGED_STATE,
                non_retryable=True,
            )
        expiry = asyncio.create_task(self._expiry_loop())
        delivery = asyncio.create_task(self._delivery_loop())
        await workflow.wait_condition(self._continue_due)
        self._stopping = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        await delivery
        expiry.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        now = workflow.now()
        self._state.expire_holds(now)
        self._state.prune(now)
        workflow.continue_as_new(
            request.model_copy(update={"state": self._state, "ledger_key": self._ledger_key_record})
        )

    def _continue_due(self) -> bool:
        return self._operations >= self._limit or workflow.info().is_continue_as_new_suggested()

    # --- background loops ----------------------------------------------------------------

    async def _expiry_loop(self) -> None:
        """Refund every hold still open at its ``receipt_by``, with nobody acting."""
        while True:
            due = self._state.next_receipt_by()
            self._timer_target = due
            if due is not None and due <= workflow.now():
                self._state.expire_holds(workflow.now())
                continue
            changed = self._holds_changed

            def holds_changed(changed: int = changed) -> bool:
                return self._holds_changed != changed

            try:
                await workflow.wait_condition(
                    holds_changed,
                    timeout=None if due is None else due - workflow.now(),
                    timeout_summary="automatic refund of open holds",
                )
            except TimeoutError:
                pass

    async def _delivery_loop(self) -> None:
        """Write new ledger entries to the audit trail, start the workflows of the credit notes
        issued, and deliver receipted money: each in batches, off the operations' path."""
        while True:
            await workflow.wait_condition(
                lambda: (
                    bool(
                        self._state.unaudited or self._state.transfers or self._state.notes_to_start
                    )
                    or self._stopping
                )
            )
            if self._stopping and not self._state.notes_to_start:
                return
            entries = [] if self._stopping else self._state.take_unaudited()[:AUDIT_BATCH]
            steps = []
            if entries:
                steps.append(self._audit(entries))
            if self._state.notes_to_start:
                steps.append(self._start_notes(self._state.notes_to_start[:NOTE_START_BATCH]))
            await asyncio.gather(*steps)
            if self._stopping:
                continue
            transfers = list(self._state.transfers[:DELIVERY_BATCH])
            if transfers:
                delivered = await asyncio.gather(*(self._deliver(t) for t in transfers))
                if not all(delivered):
                    await workflow.wait_condition(lambda: self._stopping, timeout=DELIVERY_BACKOFF)

    async def _audit(self, entries: list[LedgerEntry]) -> None:
        await workflow.execute_activity_method(
            LedgerActivities.write_ledger_entries,
            AuditInput(entries=entries),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
        self._state.mark_audited(entries)

    async def _start_notes(self, batch: list[NoteInput]) -> None:
        """Start the workflows of notes issued; take back the hold of any whose cheque turns
        out to have a note already (cashed before)."""
        result = await workflow.execute_activity_method(
            LedgerActivities.start_credit_notes,
            StartNotesInput(notes=batch),
            start_to_close_timeout=NOTE_START_TIMEOUT,
            retry_policy=RETRY,
            summary=f"start {len(batch)} credit note workflow(s)",
        )
        now = workflow.now()
        for started in batch:
            if started.note.uid in result.already_cashed:
                self._state.void_note(started.cash_key, started.note, now)
            else:
                self._state.note_started(started.note.uid)

    async def _deliver(self, transfer: Transfer) -> bool:
        try:
            await workflow.execute_activity_method(
                LedgerActivities.deliver_transfer,
                transfer,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                # The recipient account does not exist or refuses the money: give it back.
                self._state.transfer_returned(transfer.transfer_id, workflow.now())
                return True
            workflow.logger.warning("transfer %s not delivered yet: %s", transfer.transfer_id, exc)
            return False
        self._state.transfer_delivered(transfer.transfer_id, workflow.now())
        return True

    def _hold_placed(self, note: CreditNote) -> None:
        if self._timer_target is None or note.receipt_by < self._timer_target:
            self._holds_changed += 1

    # --- queries -----------------------------------------------------------------------------

    @workflow.query
    def balance(self) -> BalanceView:
        return self._state.view()

    @workflow.query
    def statement(self, limit: int = 50) -> Statement:
        return Statement(view=self._state.view(), entries=self._state.recent[-limit:])

    @workflow.query
    def state(self) -> AccountState:
        return self._state

    @workflow.query
    def note_keeper(self, note_uid: str) -> NoteKeeper:
        """Who keeps the credit note ``note_uid``: this account (placed before notes were
        workflows), its workflow being started, or its workflow (or no one)."""
        if note_uid in self._state.holds:
            return NoteKeeper.ACCOUNT
        if any(started.note.uid == note_uid for started in self._state.notes_to_start):
            return NoteKeeper.STARTING
        return NoteKeeper.WORKFLOW

    # --- updates -----------------------------------------------------------------------------

    @workflow.update
    async def deposit(self, request: DepositInput) -> BalanceView:
        """Add money on an order signed by the operator this worker trusts (once per key)."""
        verify: Callable[[], None] | None = None
        if _orders_are_signed():
            verify = await self._operator_check(
                check_deposit, request, f"deposit {request.idempotency_key}"
            )
        self._operations += 1
        try:
            return self._state.deposit(
                request.idempotency_key,
                request.amount,
                workflow.now(),
                request.reference,
                verify=verify,
                signed_at=request.signed_at,
            )
        except Refusal as exc:
            raise exc.to_application_error() from None

    @deposit.validator
    def _validate_deposit(self, request: DepositInput) -> None:
        if self._state.has_seen(request.idempotency_key):
            return
        try:
            check_deposit(request, account=self._state.account, now=workflow.now(), operator=None)
        except Refusal as exc:
            raise exc.to_application_error() from None

    @workflow.update
    async def set_overdraft_limit(self, request: OverdraftInput) -> BalanceView:
        """Let the account go ``limit`` below zero, on an order signed by the operator this
        worker trusts (once per key)."""
        verify = await self._operator_check(
            check_overdraft, request, f"overdraft order {request.idempotency_key}"
        )
        self._operations += 1
        try:
            return self._state.set_overdraft_limit(
                request.idempotency_key,
                request.limit,
                workflow.now(),
                verify=verify,
                signed_at=request.signed_at,
            )
        except Refusal as exc:
            raise exc.to_application_error() from None

    @set_overdraft_limit.validator
    def _validate_set_overdraft_limit(self, request: OverdraftInput) -> None:
        if self._state.has_seen(request.idempotency_key):
            return
        try:
            check_overdraft(request, account=self._state.account, now=workflow.now(), operator=None)
        except Refusal as exc:
            raise exc.to_application_error() from None

    async def _operator_check(
        self, check: Callable[..., None], request: DepositInput | OverdraftInput, order: str
    ) -> Callable[[], None] | None:
        """``check`` of an operator-signed order, bound to the operator's keys and now; None
        when the order's key was already applied (its first answer stands, unchecked again)."""
        if self._state.has_seen(request.idempotency_key):
            return None
        operator = await self._operator_keys(order)
        return functools.partial(
            check, request, account=self._state.account, now=workflow.now(), operator=operator
        )

    async def _operator_keys(self, order: str) -> OperatorKeys:
        try:
            return await workflow.execute_local_activity_method(
                LedgerActivities.operator_keys, start_to_close_timeout=KEY_LOOKUP_TIMEOUT
            )
        except ActivityError as exc:
            raise refusal(
                f"cannot verify {order}: no operator keys ({exc})", BAD_SIGNATURE
            ) from None

    async def _owner_keys(self) -> list[PublicKeyRecord]:
        """The owner's registered keys, to check a cheque with. From the patch on, cheques
        cashed together share one lookup, and keys looked up less than OWNER_KEYS_TTL ago (by
        the workflow's clock) are used again: a revocation takes effect as fast as the workers'
        own key cache lets it. (A run that cashed before the patch keeps one lookup each.)"""
        if not workflow.patched(OWNER_KEYS_ONCE_PATCH):
            return await self._lookup_owner_keys()
        now = workflow.now()
        if self._owner_keys_at is not None and now - self._owner_keys_at < OWNER_KEYS_TTL:
            return self._owner_keys_cache
        if self._owner_keys_lookup is None or self._owner_keys_lookup.done():
            self._owner_keys_lookup = asyncio.create_task(self._refresh_owner_keys(now))
        return await asyncio.shield(self._owner_keys_lookup)

    async def _refresh_owner_keys(self, now: datetime) -> list[PublicKeyRecord]:
        keys = await self._lookup_owner_keys()
        self._owner_keys_cache, self._owner_keys_at = keys, now
        return keys

    async def _lookup_owner_keys(self) -> list[PublicKeyRecord]:
        return await workflow.execute_local_activity_method(
            LedgerActivities.lookup_user_keys,
            KeysLookupInput(user=self._state.owner),
            start_to_close_timeout=KEY_LOOKUP_TIMEOUT,
        )

    @workflow.update
    async def cash_cheque(self, request: CashChequeInput) -> CreditNote:
        """Verify the cheque against the owner's registered keys and hold ``spend``; from the
        patch on, the credit note is a workflow of its own."""
        if workflow.patched(NOTES_PATCH):
            return await self._cash_into_note(request)
        keys = []
        if not self._state.has_seen(request.idempotency_key):
            try:
                keys = await self._owner_keys()
            except ActivityError as exc:
                raise refusal(
                    f"cannot verify a cheque signed by {self._state.owner}: {exc}", BAD_SIGNATURE
                ) from None
        note = self._cash(request, keys, note_workflow=False)
        self._hold_placed(note)
        return note

    async def _cash_into_note(self, request: CashChequeInput) -> CreditNote:
        """Hold and issue the note at once; its workflow starts in the background
        (``_delivery_loop``), so no cashing waits on another."""
        key = request.idempotency_key
        keys = [] if self._state.has_seen(key) else await self._owner_keys_for(request.cheque)
        return self._cash(request, keys, note_workflow=True)

    def _cash(
        self, request: CashChequeInput, keys: list[PublicKeyRecord], *, note_workflow: bool
    ) -> CreditNote:
        self._operations += 1
        try:
            return self._state.cash_cheque(
                request.idempotency_key,
                request.cheque,
                spend=request.spend,
                recipient=request.recipient,
                resource=request.resource,
                receipt_within=timedelta(seconds=request.receipt_within_seconds),
                keys=keys,
                now=workflow.now(),
                job_uid=request.job_uid,
                note_workflow=note_workflow,
            )
        except Refusal as exc:
            raise exc.to_application_error() from None

    async def _owner_keys_for(self, cheque: Cheque) -> list[PublicKeyRecord]:
        """The owner's keys to check ``cheque`` with. The carried ones serve while they name the
        cheque's key and are younger than OWNER_KEYS_MAX_AGE, and past OWNER_KEYS_FRESH a lookup
        refreshes them in the background; otherwise the cheque waits for a lookup (one however
        many cheques wait, at most every OWNER_KEYS_MIN_INTERVAL for a key they do not name)."""
        state, now = self._state, workflow.now()
        at = state.owner_keys_at
        if state.owner_keys is not None and at is not None:
            age = now - at
            known = any(key.key_id == cheque.key_id for key in state.owner_keys)
            if age >= OWNER_KEYS_FRESH:
                self._look_up_owner_keys(now)
            if age < OWNER_KEYS_MAX_AGE and (known or age < OWNER_KEYS_MIN_INTERVAL):
                return state.owner_keys
        try:
            return await asyncio.shield(self._look_up_owner_keys(now))
        except ActivityError as exc:
            raise refusal(
                f"cannot verify a cheque signed by {state.owner}: {exc}", BAD_SIGNATURE
            ) from None

    def _look_up_owner_keys(self, now: datetime) -> asyncio.Task[list[PublicKeyRecord]]:
        """The lookup of the owner's keys under way, or a new one."""
        if self._owner_keys_lookup is None or self._owner_keys_lookup.done():
            self._owner_keys_lookup = asyncio.create_task(self._fetch_owner_keys(now))
        return self._owner_keys_lookup

    async def _fetch_owner_keys(self, now: datetime) -> list[PublicKeyRecord]:
        try:
            keys = await workflow.execute_activity_method(
                LedgerActivities.lookup_user_keys,
                KeysLookupInput(user=self._state.owner),
                start_to_close_timeout=KEY_LOOKUP_TIMEOUT,
                schedule_to_close_timeout=3 * KEY_LOOKUP_TIMEOUT,
                summary="the owner's keys, to check cheques with",
            )
        except ActivityError as exc:
            workflow.logger.warning("cannot look up the keys of %s: %s", self._state.owner, exc)
            raise
        self._state.owner_keys, self._state.owner_keys_at = keys, now
        return keys

    @workflow.signal(name=HOLD_CLOSED_SIGNAL)
    async def hold_closed(self, closed: HoldClosed) -> None:
        """A credit note's end, from its workflow (signed by the ledger workers): pay the
        recipient and release the rest, once."""
        note = closed.note
        if self._state.has_settled(note.uid):
            return
        try:
            await self._ledger_key(
                lambda key: hold_closed_verifies(closed, key=key), f"the end of note {note.uid}"
            )
            self._state.close_note(closed, workflow.now())
        except (Refusal, ApplicationError) as exc:
            # A forged or mistaken end changes nothing; a signal has nobody to answer.
            workflow.logger.warning("ignored the end of credit note %s: %s", note.uid, exc)
            return
        self._operations += 1

    @cash_cheque.validator
    def _validate_cash_cheque(self, request: CashChequeInput) -> None:
        if self._state.has_seen(request.idempotency_key):
            return
        try:
            self._state.check_cheque(
                request.cheque,
                spend=request.spend,
                recipient=request.recipient,
                resource=request.resource,
                now=workflow.now(),
                keys=None,
            )
        except Refusal as exc:
            raise exc.to_application_error() from None

    @workflow.update
    def receipt(self, request: ReceiptInput) -> ReceiptResult:
        self._operations += 1
        try:
            return self._state.receipt(
                request.idempotency_key, request.credit_note, request.amount, workflow.now()
            )
        except Refusal as exc:
            raise exc.to_application_error() from None

    @receipt.validator
    def _validate_receipt(self, request: ReceiptInput) -> None:
        self._validate_note(request.idempotency_key, request.credit_note)

    @workflow.update
    def refund(self, request: RefundInput) -> RefundResult:
        self._operations += 1
        try:
            return self._state.refund(request.idempotency_key, request.credit_note, workflow.now())
        except Refusal as exc:
            raise exc.to_application_error() from None

    @refund.validator
    def _validate_refund(self, request: RefundInput) -> None:
        self._validate_note(request.idempotency_key, request.credit_note)

    @workflow.update
    async def credit(self, request: CreditInput) -> BalanceView:
        """Money from another account's receipt (the idempotency key is the transfer id),
        signed by the ledger workers."""
        verify: Callable[[], None] | None = None
        if _orders_are_signed() and not self._state.has_credited(request.idempotency_key):
            key = await self._key_for(request)
            verify = functools.partial(check_credit, request, account=self._state.account, key=key)
        self._operations += 1
        try:
            return self._state.credit(
                request.idempotency_key,
                request.from_account,
                request.amount,
                request.reference,
                workflow.now(),
                job_uid=request.job_uid,
                verify=verify,
            )
        except Refusal as exc:
            raise exc.to_application_error() from None

    @credit.validator
    def _validate_credit(self, request: CreditInput) -> None:
        if self._state.has_credited(request.idempotency_key):
            return
        try:
            check_credit(request, account=self._state.account, key=None)
        except Refusal as exc:
            raise exc.to_application_error() from None

    async def _key_for(self, request: CreditInput) -> PublicKeyRecord:
        return await self._ledger_key(
            lambda key: credit_verifies(request, account=self._state.account, key=key),
            f"credit {request.idempotency_key}",
        )

    async def _ledger_key(
        self, verifies: Callable[[PublicKeyRecord], bool], what: str
    ) -> PublicKeyRecord:
        """The ledger workers' public key: fetched for the first signed message, then carried;
        fetched again only when a message does not verify with it (the ledger key may have been
        replaced). The caller checks the message with the key returned."""
        key = self._ledger_key_record
        if key is not None and verifies(key):
            return key
        try:
            key = await workflow.execute_local_activity_method(
                LedgerActivities.ledger_public_key, start_to_close_timeout=KEY_LOOKUP_TIMEOUT
            )
        except ActivityError as exc:
            raise refusal(f"cannot verify {what}: {exc}", BAD_SIGNATURE) from None
        self._ledger_key_record = key
        if not verifies(key):
            raise refusal(f"{what} is not the ledger's signature", BAD_SIGNATURE)
        return key

    def _validate_note(self, key: str, note: CreditNote) -> None:
        if self._state.has_seen(key):
            return
        try:
            self._state.check_open_hold(note)
        except Refusal as exc:
            raise exc.to_application_error() from None
