"""The user workflow as it was before key orders were signed, to test an upgrade.

Registered under the same workflow type, it adds and revokes keys on any request, as the old
code did: a test runs a user on it, then moves the user to today's workflow mid-run.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jobsheet.contracts.refusals import refusal
    from jobsheet.identity.calls import UserInput
    from jobsheet.identity.keys import PublicKeyRecord
    from jobsheet.identity.models import RegisterKeyInput, RevokeKeyInput
    from jobsheet.ledger.errors import UNKNOWN_KEY
    from workflows.user import UserWorkflow


@workflow.defn(name="UserWorkflow")
class LegacyUserWorkflow(UserWorkflow):
    @workflow.run
    async def run(self, request: UserInput) -> None:
        await super().run(request)

    @workflow.update
    def register_key(self, request: RegisterKeyInput) -> list[PublicKeyRecord]:  # type: ignore[override]
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

    @workflow.update
    def revoke_key(self, request: RevokeKeyInput) -> PublicKeyRecord:  # type: ignore[override]
        for index, key in enumerate(self._state.keys):
            if key.key_id == request.key_id:
                if key.revoked_at is None:
                    self._operations += 1
                    key = key.model_copy(update={"revoked_at": workflow.now()})
                    self._state.keys[index] = key
                return key
        raise refusal(f"{self._state.name} has no key {request.key_id}", UNKNOWN_KEY)
