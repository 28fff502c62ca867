"""The user registry: one entity workflow per user (``user-<name>``) holding public keys and nonces.

Keys carry their signing period, so a rotation keeps old signatures verifiable for what they
signed before it and a revocation makes a key sign nothing new. The nonces of authorisations
already used are kept until no authorisation that old could be accepted anyway.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import AwareDatetime, BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jobsheet.identity import PublicKeyRecord
    from jobsheet.ledger.errors import AUTHORISATION_REUSED, KEY_EXISTS, UNKNOWN_KEY, refused
    from jobsheet.ledger.models import RegisterKeyInput, RevokeKeyInput, UseNonceInput

NONCE_RETENTION = timedelta(days=2)
KEY_RETENTION = timedelta(days=1)


class NonceUse(BaseModel):
    idempotency_key: str
    issued_at: AwareDatetime


class UserState(BaseModel):
    name: str
    keys: list[PublicKeyRecord]
    nonces: dict[str, NonceUse] = Field(default_factory=dict)
    remembered: dict[str, AwareDatetime] = Field(default_factory=dict)


class UserInput(BaseModel):
    """Start input: the user and their first key (``state`` only on continue-as-new)."""

    name: str
    key: PublicKeyRecord
    continue_as_new_after: int = Field(default=500, ge=1)
    state: UserState | None = None


@workflow.defn
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
        """Add a key; with ``retire_others`` older keys stop signing from now (a rotation)."""
        if request.idempotency_key not in self._state.remembered:
            now = workflow.now()
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
            raise refused(KEY_EXISTS, f"key {request.key.key_id} is already registered")

    @workflow.update
    def revoke_key(self, request: RevokeKeyInput) -> PublicKeyRecord:
        """From now on the key signs nothing; what it signed before stays verifiable."""
        for index, key in enumerate(self._state.keys):
            if key.key_id == request.key_id:
                if key.revoked_at is None:
                    self._operations += 1
                    key = key.model_copy(update={"revoked_at": workflow.now()})
                    self._state.keys[index] = key
                return key
        raise refused(UNKNOWN_KEY, f"{self._state.name} has no key {request.key_id}")

    @workflow.update
    def use_nonce(self, request: UseNonceInput) -> None:
        """Consume an authorisation's nonce; a second use under another key is refused."""
        used = self._state.nonces.get(request.nonce)
        if used is not None:
            if used.idempotency_key == request.idempotency_key:
                return
            raise refused(AUTHORISATION_REUSED, "this authorisation has already been used")
        self._operations += 1
        self._state.nonces[request.nonce] = NonceUse(
            idempotency_key=request.idempotency_key, issued_at=request.issued_at
        )

    @use_nonce.validator
    def _validate_use_nonce(self, request: UseNonceInput) -> None:
        used = self._state.nonces.get(request.nonce)
        if used is not None and used.idempotency_key != request.idempotency_key:
            raise refused(AUTHORISATION_REUSED, "this authorisation has already been used")
