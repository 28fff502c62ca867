"""The user registry: one entity workflow per user (``user-<name>``) holding public keys and nonces.

Keys carry their signing period, so a rotation keeps old signatures verifiable for what they
signed before it and a revocation makes a key sign nothing new. A key is added or revoked only
on an order signed by a current key of this user (checked here against the keys the workflow
holds), or revoked on an order of the operator the worker trusts (its keys fetched by a local
activity), so a program that reaches Temporal cannot put its own key in anyone's registry. The
nonces of authorisations already used are kept until no authorisation that old could be accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    # Native Ed25519 code imports ``cryptography.exceptions`` when a signature is bad; it must
    # find the process's module, not a sandboxed copy (re-initialising it aborts the process).
    import cryptography.exceptions
    import cryptography.hazmat.bindings._rust  # noqa: F401

    from activities.ledger import LedgerActivities
    from jobsheet.contracts.refusals import Refusal, refusal
    from jobsheet.identity.calls import USER_WORKFLOW, NonceUse, UserInput, UserState
    from jobsheet.identity.key_orders import check_add_key, check_revoke_key, revoke_needs_operator
    from jobsheet.identity.keys import PublicKeyRecord
    from jobsheet.identity.models import (
        OperatorKeys,
        RegisterKeyInput,
        RevokeKeyInput,
        UseNonceInput,
    )
    from jobsheet.ledger.errors import AUTHORISATION_REUSED, BAD_SIGNATURE, KEY_EXISTS, UNKNOWN_KEY

NONCE_RETENTION = timedelta(days=2)
KEY_RETENTION = timedelta(days=1)
KEY_LOOKUP_TIMEOUT = timedelta(seconds=10)
SIGNED_KEY_ORDERS_PATCH = "user-signed-key-orders"
"""Key changes are checked for signatures from this patch on (older histories: not)."""


def _key_orders_are_signed() -> bool:
    """Whether the key order being handled must be signed: yes on every run that meets the patch
    live. As in the account workflow, a run that began before the patch answers no while it
    replays its old updates, so there each newer update asks again under its own id."""
    if workflow.patched(SIGNED_KEY_ORDERS_PATCH):
        return True
    update = workflow.current_update_info()
    return update is None or workflow.patched(f"{SIGNED_KEY_ORDERS_PATCH}/{update.id}")


@workflow.defn(name=USER_WORKFLOW)
class UserWorkflow:
    """Registers, rotates and revokes a user's keys; consumes authorisation nonces once."""

    @workflow.init
    def __init__(self, request: UserInput) -> None:
        self._state = request.state or UserState(name=request.name, keys=[request.key])
        self._limit = request.continue_as_new_after
        self._operations = 0

    @workflow.run
    async def run(self, request: UserInput) -> None:
        await workflow.wait_condition(
            lambda: (
                self._operations >= self._limit or workflow.info().is_continue_as_new_suggested()
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        now = workflow.now()
        state = self._state
        state.nonces = {
            n: use for n, use in state.nonces.items() if use.issued_at + NONCE_RETENTION > now
        }
        state.remembered = {k: at for k, at in state.remembered.items() if at + KEY_RETENTION > now}
        workflow.continue_as_new(
            UserInput(
                name=request.name,
                key=request.key,
                continue_as_new_after=self._limit,
                state=state,
            )
        )

    @workflow.query
    def keys(self) -> list[PublicKeyRecord]:
        return list(self._state.keys)

    @workflow.update
    def register_key(self, request: RegisterKeyInput) -> list[PublicKeyRecord]:
        """Add a key on an order signed by a current key of this user; with ``retire_others``
        older keys stop signing from now (a rotation). Once per idempotency key."""
        if request.idempotency_key not in self._state.remembered:
            now = workflow.now()
            if _key_orders_are_signed():
                self._check(
                    lambda: check_add_key(
                        request, user=self._state.name, keys=self._state.keys, now=now
                    )
                )
                if any(key.key_id == request.key.key_id for key in self._state.keys):
                    raise refusal(f"key {request.key.key_id} is already registered", KEY_EXISTS)
            self._state.remembered[request.idempotency_key] = now
            self._operations += 1
            new = request.key.model_copy(update={"valid_from": min(request.key.valid_from, now)})
            if request.retire_others:
                self._state.keys = [
                    key
                    if key.valid_until is not None
                    else key.model_copy(update={"valid_until": now})
                    for key in self._state.keys
                ]
            self._state.keys.append(new)
        return list(self._state.keys)

    @register_key.validator
    def _validate_register_key(self, request: RegisterKeyInput) -> None:
        if request.idempotency_key in self._state.remembered:
            return
        if any(key.key_id == request.key.key_id for key in self._state.keys):
            raise refusal(f"key {request.key.key_id} is already registered", KEY_EXISTS)
        self._check(
            lambda: check_add_key(
                request, user=self._state.name, keys=self._state.keys, now=workflow.now()
            )
        )

    @workflow.update
    async def revoke_key(self, request: RevokeKeyInput) -> PublicKeyRecord:
        """From now on the key signs nothing; what it signed before stays verifiable. On an
        order signed by a current key of this user, or by the operator (for a stolen key)."""
        index = self._key_index(request.key_id)
        if _key_orders_are_signed():
            if request.idempotency_key in self._state.remembered:
                return self._state.keys[index]
            operator = None
            if revoke_needs_operator(request, user=self._state.name):
                operator = await self._operator_keys(request.idempotency_key)
            now = workflow.now()
            self._check(
                lambda: check_revoke_key(
                    request,
                    user=self._state.name,
                    keys=self._state.keys,
                    now=now,
                    operator=operator,
                )
            )
            self._state.remembered[request.idempotency_key] = now
            index = self._key_index(request.key_id)
        key = self._state.keys[index]
        if key.revoked_at is None:
            self._operations += 1
            key = key.model_copy(update={"revoked_at": workflow.now()})
            self._state.keys[index] = key
        return key

    @revoke_key.validator
    def _validate_revoke_key(self, request: RevokeKeyInput) -> None:
        self._key_index(request.key_id)
        if request.idempotency_key in self._state.remembered:
            return
        self._check(
            lambda: check_revoke_key(
                request,
                user=self._state.name,
                keys=self._state.keys,
                now=workflow.now(),
                operator=None,
            )
        )

    def _key_index(self, key_id: str) -> int:
        for index, key in enumerate(self._state.keys):
            if key.key_id == key_id:
                return index
        raise refusal(f"{self._state.name} has no key {key_id}", UNKNOWN_KEY)

    async def _operator_keys(self, order: str) -> OperatorKeys:
        try:
            return await workflow.execute_local_activity_method(
                LedgerActivities.operator_keys, start_to_close_timeout=KEY_LOOKUP_TIMEOUT
            )
        except ActivityError as exc:
            raise refusal(
                f"cannot verify revocation {order}: no operator keys ({exc})", BAD_SIGNATURE
            ) from None

    @staticmethod
    def _check(check: Callable[[], None]) -> None:
        try:
            check()
        except Refusal as exc:
            raise exc.to_application_error() from None

    @workflow.update
    def use_nonce(self, request: UseNonceInput) -> None:
        """Consume an authorisation's nonce; a second use under another key is refused."""
        used = self._state.nonces.get(request.nonce)
        if used is not None:
            if used.idempotency_key == request.idempotency_key:
                return
            raise refusal("this authorisation has already been used", AUTHORISATION_REUSED)
        self._operations += 1
        self._state.nonces[request.nonce] = NonceUse(
            idempotency_key=request.idempotency_key, issued_at=request.issued_at
        )

    @use_nonce.validator
    def _validate_use_nonce(self, request: UseNonceInput) -> None:
        used = self._state.nonces.get(request.nonce)
        if used is not None and used.idempotency_key != request.idempotency_key:
            raise refusal("this authorisation has already been used", AUTHORISATION_REUSED)
