"""The account workflow as it was before deposits and credits were signed, to test an upgrade.

Registered under the same workflow type, it accepts any ``deposit`` and ``credit`` as the old
code did: a test runs an account on it, then moves the account to today's workflow mid-run.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jobsheet.contracts.refusals import Refusal
    from jobsheet.ledger.calls import OpenAccountInput
    from jobsheet.ledger.models import BalanceView, CreditInput, DepositInput
    from workflows.account import AccountWorkflow


@workflow.defn(name="AccountWorkflow")
class LegacyAccountWorkflow(AccountWorkflow):
    @workflow.run
    async def run(self, request: OpenAccountInput) -> None:
        await super().run(request)

    @workflow.update
    def deposit(self, request: DepositInput) -> BalanceView:  # type: ignore[override]
        self._operations += 1
        try:
            return self._state.deposit(
                request.idempotency_key, request.amount, workflow.now(), request.reference
            )
        except Refusal as exc:
            raise exc.to_application_error() from None

    @workflow.update
    def credit(self, request: CreditInput) -> BalanceView:  # type: ignore[override]
        self._operations += 1
        try:
            return self._state.credit(
                request.idempotency_key,
                request.from_account,
                request.amount,
                request.reference,
                workflow.now(),
            )
        except Refusal as exc:
            raise exc.to_application_error() from None
