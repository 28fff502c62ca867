"""The ledger steps the job sheet workflow calls (activities/jobs.py), driven from a workflow."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from jobsheet.identity import registry
    from jobsheet.identity.authorisation import Authorisation, sign_authorisation
    from jobsheet.identity.keys import generate_identity
    from jobsheet.identity.models import VerifyAuthorisationInput
    from jobsheet.ledger import errors
    from jobsheet.ledger import operations as ledger
    from jobsheet.ledger.cheque import write_cheque
    from jobsheet.ledger.models import CashChequeInput, ReceiptInput, RefundInput
    from tests.ledger.conftest import Ledger

RESOURCE = "sha256:" + "34" * 32
TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(maximum_attempts=3)


class PayInput(BaseModel):
    ledger_task_queue: str = ""
    cash: CashChequeInput
    receipt: str | None
    recash: bool = False


class PayOutcome(BaseModel):
    error_type: str | None = None
    attempts: int = 0
    paid: Decimal | None = None


class VerifyInput(BaseModel):
    ledger_task_queue: str = ""
    authorisation: Authorisation
    resource: str
    keys: list[str]


@workflow.defn(sandboxed=False)
class PayForJobWorkflow:
    """What the job sheet does: cash a cheque, then receipt (or refund) the credit note."""

    @workflow.run
    async def run(self, request: PayInput) -> PayOutcome:
        tq = request.ledger_task_queue
        try:
            note = await workflow.execute_activity_method(
                JobActivities.cash_cheque,
                request.cash,
                task_queue=tq,
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            if request.recash:
                second = request.cash.model_copy(update={"idempotency_key": "another"})
                await workflow.execute_activity_method(
                    JobActivities.cash_cheque,
                    second,
                    task_queue=tq,
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                )
            if request.receipt is None:
                await workflow.execute_activity_method(
                    JobActivities.refund_credit_note,
                    RefundInput(
                        idempotency_key=f"{workflow.info().workflow_id}-r", credit_note=note
                    ),
                    task_queue=tq,
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                )
                return PayOutcome(paid=Decimal("0.00"))
            result = await workflow.execute_activity_method(
                JobActivities.receipt_credit_note,
                ReceiptInput(
                    idempotency_key=f"{workflow.info().workflow_id}-p",
                    credit_note=note,
                    amount=Decimal(request.receipt),
                ),
                task_queue=tq,
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
            return PayOutcome(paid=result.paid)
        except ActivityError as exc:
            assert isinstance(exc.cause, ApplicationError)
            return PayOutcome(error_type=exc.cause.type, attempts=1)


@workflow.defn(sandboxed=False)
class VerifyWorkflow:
    @workflow.run
    async def run(self, request: VerifyInput) -> list[str]:
        outcomes = []
        for key in request.keys:
            try:
                await workflow.execute_activity_method(
                    JobActivities.verify_cancel,
                    VerifyAuthorisationInput(
                        idempotency_key=key,
                        authorisation=request.authorisation,
                        resource=request.resource,
                    ),
                    task_queue=request.ledger_task_queue,
                    start_to_close_timeout=timedelta(seconds=30),
                )
                outcomes.append("ok")
            except ActivityError as exc:
                assert isinstance(exc.cause, ApplicationError) and exc.cause.non_retryable
                outcomes.append(exc.cause.type or "")
        return outcomes


async def run_in_worker(env: Ledger, wf, arg):
    task_queue = f"jobs-{uuid.uuid4().hex}"
    arg = arg.model_copy(update={"ledger_task_queue": task_queue})
    steps = JobActivities(env.client, env.settings)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[PayForJobWorkflow, VerifyWorkflow],
        activities=[
            steps.cash_cheque,
            steps.receipt_credit_note,
            steps.refund_credit_note,
            steps.verify_cancel,
        ],
    ):
        return await env.client.execute_workflow(
            wf, arg, id=f"job-{uuid.uuid4()}", task_queue=task_queue
        )


async def test_job_sheet_pays_through_the_activities(ledger_env: Ledger) -> None:
    alice, shop = await ledger_env.user("alice"), await ledger_env.user("shop")
    payer, payee = await ledger_env.account(alice, funds="50.00"), await ledger_env.account(shop)

    def request(receipt: str | None, *, recash: bool = False, **cheque) -> PayInput:
        chq = write_cheque(
            alice, account=payer, recipient=payee, resource=RESOURCE, max_spend="20.00", **cheque
        )
        cash = CashChequeInput(
            idempotency_key=ledger.new_key(),
            cheque=chq,
            spend=Decimal("20.00"),
            recipient=payee,
            resource=RESOURCE,
        )
        return PayInput(cash=cash, receipt=receipt, recash=recash)

    paid = await run_in_worker(ledger_env, PayForJobWorkflow.run, request("12.00"))
    assert paid.paid == Decimal("12.00")
    refunded = await run_in_worker(ledger_env, PayForJobWorkflow.run, request(None))
    assert refunded.paid == Decimal("0.00")
    twice = await run_in_worker(ledger_env, PayForJobWorkflow.run, request("1.00", recash=True))
    assert twice.error_type == errors.CHEQUE_ALREADY_CASHED
    old = datetime.now(UTC) - timedelta(hours=5)
    expired = await run_in_worker(
        ledger_env, PayForJobWorkflow.run, request("1.00", now=old, valid_for=timedelta(hours=1))
    )
    assert expired.error_type == errors.CHEQUE_EXPIRED
    view = await ledger.balance(ledger_env.client, payer)
    # 50 - 12 paid; the refunded hold, the double-cashed cheque's hold (still open) = 20 held.
    assert (view.balance, view.held) == (Decimal("38.00"), Decimal("20.00"))


async def test_verify_authorisation_once_per_use(ledger_env: Ledger) -> None:
    alice = await ledger_env.user("alice")
    auth = sign_authorisation(alice, RESOURCE)
    outcomes = await run_in_worker(
        ledger_env,
        VerifyWorkflow.run,
        VerifyInput(authorisation=auth, resource=RESOURCE, keys=["job-1", "job-1", "job-2"]),
    )
    assert outcomes == ["ok", "ok", errors.AUTHORISATION_REUSED]
    day_old = sign_authorisation(alice, RESOURCE, now=datetime.now(UTC) - timedelta(days=1))
    other = sign_authorisation(alice, "sha256:other")
    outcomes = await run_in_worker(
        ledger_env,
        VerifyWorkflow.run,
        VerifyInput(authorisation=day_old, resource=RESOURCE, keys=["job-3"]),
    )
    assert outcomes == [errors.AUTHORISATION_EXPIRED]
    outcomes = await run_in_worker(
        ledger_env,
        VerifyWorkflow.run,
        VerifyInput(authorisation=other, resource=RESOURCE, keys=["j"]),
    )
    assert outcomes == [errors.WRONG_RESOURCE]


async def test_rotation_keeps_old_signatures_and_revocation_stops_new_ones(
    ledger_env: Ledger,
) -> None:
    alice = await ledger_env.user("alice")
    before = sign_authorisation(alice, RESOURCE)
    new = generate_identity(alice.name)
    keys = await registry.rotate_key(ledger_env.client, alice, new)
    assert len(keys) == 2 and keys[0].valid_until is not None
    after_old = sign_authorisation(alice, RESOURCE)
    after_new = sign_authorisation(new, RESOURCE)
    check = [
        VerifyInput(authorisation=a, resource=RESOURCE, keys=[ledger.new_key()])
        for a in (before, after_old, after_new)
    ]
    results = [await run_in_worker(ledger_env, VerifyWorkflow.run, c) for c in check]
    assert results == [["ok"], [errors.BAD_SIGNATURE], ["ok"]]
    await registry.revoke_key(ledger_env.client, new, user=alice.name, key_id=new.key_id)
    revoked = VerifyInput(
        authorisation=sign_authorisation(new, RESOURCE), resource=RESOURCE, keys=["x"]
    )
    assert await run_in_worker(ledger_env, VerifyWorkflow.run, revoked) == [errors.BAD_SIGNATURE]
