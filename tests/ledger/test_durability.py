"""Continue-as-new keeps the books; the audit trail re-adds to them; random runs conserve money."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal

from minio import Minio
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from jobsheet.identity.keys import Identity
from jobsheet.ledger import errors
from jobsheet.ledger import operations as ledger
from jobsheet.ledger.models import (
    CreditNote,
    HoldStatus,
    LedgerEntry,
    NoteView,
    ReceiptInput,
    RefundInput,
    account_workflow_id,
)
from jobsheet.ledger.state import cheque_tag
from tests.ledger.conftest import Ledger
from tests.ledger.factories import readd
from tests.ledger.test_account_workflow import (
    cash_input,
    new_cheque,
    refused_with,
    state_of,
    wait_for,
)
from workflows.credit_note import CreditNoteWorkflow


def audit_trail(s3: Minio, bucket: str, account: str) -> list[LedgerEntry]:
    entries = []
    for item in s3.list_objects(bucket, prefix=f"ledger/{account}/", recursive=True):
        response = s3.get_object(bucket, item.object_name or "")
        try:
            entries.append(LedgerEntry.model_validate(json.loads(response.read())))
        finally:
            response.close()
            response.release_conn()
    return entries


async def settled(env: Ledger, *accounts: str) -> bool:
    for account in accounts:
        state = await state_of(env, account)
        if state.transfers or state.unaudited:
            return False
    return True


async def check_audit(env: Ledger, s3: Minio, account: str) -> None:
    """Every entry is in the object store exactly once and re-adds to the reported balances."""
    entries = audit_trail(s3, env.settings.bucket, account)
    state = await state_of(env, account)
    assert sorted(e.seq for e in entries) == list(range(1, state.seq + 1))
    view = await ledger.balance(env.client, account)
    assert readd(entries) == (view.balance, view.held, view.in_flight)


async def note_view(client: Client, note: CreditNote) -> NoteView:
    """A note's state from its workflow; an open note whose workflow has not had its first task
    (it waits for receipt_by) from its start input."""
    try:
        return await ledger.note_handle(client, note).query(CreditNoteWorkflow.view)
    except RPCError as exc:
        if exc.status != RPCStatusCode.FAILED_PRECONDITION:
            raise
    started = await ledger.note_start_input(client, note.uid, note.account)
    assert started is not None
    return NoteView(note=started.note, cash_key=started.cash_key, status=HoldStatus.OPEN, paid=0)


async def test_state_survives_continue_as_new_and_a_replayed_cheque_is_refused(
    ledger_env: Ledger, s3: Minio
) -> None:
    client = ledger_env.client
    alice, shop = await ledger_env.user("alice"), await ledger_env.user("shop")
    payer = await ledger_env.account(alice, funds="100.00", continue_as_new_after=4)
    payee = await ledger_env.account(shop)
    handle = client.get_workflow_handle(account_workflow_id(payer))
    first_run = (await handle.describe()).run_id
    held_cheque = new_cheque(alice, payer, payee)
    held_cashing = cash_input(held_cheque)
    held = await ledger.cash_cheque(client, held_cashing)
    paid_cheque = new_cheque(alice, payer, payee)
    paid = await ledger.cash_cheque(client, cash_input(paid_cheque))
    receipt = ReceiptInput(idempotency_key="pay", credit_note=paid, amount=Decimal("6.00"))
    await ledger.receipt(client, receipt)
    before = await state_of(ledger_env, payer)

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await wait_for(continued)
    old = await client.get_workflow_handle(handle.id, run_id=first_run).describe()
    assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW

    after = await state_of(ledger_env, payer)
    assert (after.balance, after.held, after.notes_open) == (before.balance, before.held, 1)
    assert (await note_view(client, held)).status is HoldStatus.OPEN
    assert (await note_view(client, paid)).status is HoldStatus.RECEIPTED
    assert set(after.cheques_before) == {cheque_tag(held_cheque.uid), cheque_tag(paid_cheque.uid)}
    for chq in (held_cheque, paid_cheque):
        await refused_with(
            errors.CHEQUE_ALREADY_CASHED, ledger.cash_cheque(client, cash_input(chq))
        )
    assert await ledger.receipt(client, receipt) == await ledger.receipt(client, receipt)

    # Two more runs later the account has forgotten both cheques: a second cashing of one is
    # taken back as soon as its note's workflow is refused (its id names the cheque), and that
    # note pays nothing. The first cashing again still gets its own note.
    for n in range(8):
        await ledger_env.deposit(payer, "1.00", idempotency_key=f"top-up-{n}")

    async def forgotten() -> bool:
        state = await state_of(ledger_env, payer)
        tag = cheque_tag(held_cheque.uid)
        return tag not in (*state.cheques, *state.cheques_before) and not state.cashed

    await wait_for(forgotten)
    again = await ledger.cash_cheque(client, cash_input(paid_cheque))

    async def taken_back() -> bool:
        state = await state_of(ledger_env, payer)
        return not state.notes_to_start and state.held == before.held

    await wait_for(taken_back)
    late = ReceiptInput(idempotency_key="pay-again", credit_note=again, amount=Decimal("1.00"))
    await refused_with(errors.UNKNOWN_CREDIT_NOTE, ledger.receipt(client, late))
    await refused_with(
        errors.CHEQUE_ALREADY_CASHED, ledger.cash_cheque(client, cash_input(paid_cheque))
    )
    assert await ledger.cash_cheque(client, held_cashing) == held
    topped = await ledger.balance(client, payer)
    assert (topped.balance, topped.held) == (before.balance + 8, before.held)
    await ledger.receipt(
        client, ReceiptInput(idempotency_key="pay-held", credit_note=held, amount=Decimal("10.00"))
    )
    await wait_for(lambda: settled(ledger_env, payer, payee))
    view = await ledger.balance(client, payer)
    assert (view.balance, view.held, view.in_flight) == (Decimal("92.00"), 0, 0)
    assert (await ledger.balance(client, payee)).balance == Decimal("16.00")
    await check_audit(ledger_env, s3, payer)
    await check_audit(ledger_env, s3, payee)


async def test_random_operations_on_real_workflows_conserve_money(
    ledger_env: Ledger, s3: Minio
) -> None:
    """A seeded random mix of operations, bursts and retries against real account workflows."""
    client = ledger_env.client
    rng = random.Random(20261128)
    owners: list[Identity] = [await ledger_env.user(f"owner{i}") for i in range(3)]
    limits = ["0.00", "25.00", "0.00"]
    accounts = [
        await ledger_env.account(owner, overdraft_limit=limit, continue_as_new_after=15)
        for owner, limit in zip(owners, limits, strict=True)
    ]
    provider = await ledger_env.account(await ledger_env.user("provider"))
    deposited = Decimal("0.00")
    notes: list[CreditNote] = []
    closed: dict[str, str] = {}

    async def attempt(coro) -> object:
        try:
            return await coro
        except Exception as exc:
            assert getattr(exc, "type", None) in errors.ALL, repr(exc)
            return exc

    for _ in range(60):
        kind = rng.choice(["deposit", "cash", "cash", "receipt", "refund"])
        which = rng.randrange(3)
        retries = rng.choice([1, 1, 2, 3])
        if kind == "deposit":
            amount = Decimal(rng.randint(1, 4000)).scaleb(-2)
            key = ledger.new_key()
            await asyncio.gather(
                *(
                    ledger_env.deposit(accounts[which], amount, idempotency_key=key)
                    for _ in range(retries)
                )
            )
            deposited += amount
        elif kind == "cash":
            spend = Decimal(rng.randint(1, 3000)).scaleb(-2)
            chq = new_cheque(owners[which], accounts[which], provider, max_spend=str(spend))
            request = cash_input(chq, str(spend))
            results = await asyncio.gather(
                *(attempt(ledger.cash_cheque(client, request)) for _ in range(retries))
            )
            got = [r for r in results if isinstance(r, CreditNote)]
            assert len(got) in (0, retries) and all(n == results[0] for n in got)
            notes += got[:1]
        elif notes:
            note = rng.choice(notes)
            key = ledger.new_key()
            if kind == "receipt":
                amount = (note.held * rng.randint(0, 100) / 100).quantize(Decimal("0.01"))
                op = ReceiptInput(idempotency_key=key, credit_note=note, amount=amount)
                await asyncio.gather(*(attempt(ledger.receipt(client, op)) for _ in range(retries)))
            else:
                op2 = RefundInput(idempotency_key=key, credit_note=note)
                await asyncio.gather(*(attempt(ledger.refund(client, op2)) for _ in range(retries)))
        for account, limit in zip(accounts, limits, strict=True):
            view = await ledger.balance(client, account)
            assert view.available >= -Decimal(limit)
            state = await state_of(ledger_env, account)
            for uid, hold in state.holds.items():
                if hold.status is not HoldStatus.OPEN:
                    assert closed.setdefault(uid, hold.status) == hold.status

    await wait_for(lambda: settled(ledger_env, *accounts, provider))
    total = Decimal("0.00")
    for account in [*accounts, provider]:
        view = await ledger.balance(client, account)
        total += view.available + view.held + view.in_flight
        await check_audit(ledger_env, s3, account)
    assert total == deposited


async def test_concurrent_operations_across_continue_as_new_land_exactly_once(
    ledger_env: Ledger,
) -> None:
    client = ledger_env.client
    alice, shop = await ledger_env.user("alice"), await ledger_env.user("shop")
    payer = await ledger_env.account(alice, continue_as_new_after=3)
    payee = await ledger_env.account(shop)
    handle = client.get_workflow_handle(account_workflow_id(payer))
    first_run = (await handle.describe()).run_id
    keys = [ledger.new_key() for _ in range(24)]
    cheques = [new_cheque(alice, payer, payee, max_spend="1.00") for _ in range(12)]
    requests = [cash_input(c, "1.00") for c in cheques]
    deposits = [ledger_env.deposit(payer, "2.00", idempotency_key=k) for k in keys]
    retried = [ledger_env.deposit(payer, "2.00", idempotency_key=k) for k in keys[:6]]
    await asyncio.gather(*deposits, *retried)
    notes = await asyncio.gather(*(ledger.cash_cheque(client, r) for r in requests))
    again = await asyncio.gather(*(ledger.cash_cheque(client, r) for r in requests))
    assert notes == again
    view = await ledger.balance(client, payer)
    assert (view.balance, view.held, view.open_holds) == (Decimal("48.00"), 12, 12)
    assert (await handle.describe()).run_id != first_run
