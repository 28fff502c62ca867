"""Property test: random deposits, cashings, receipts, refunds, expiry and retries never create,
lose or strand money (pure state machine over several accounts, delivering transfers by hand)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsheet.cheque import Cheque
from jobsheet.ledger.errors import Refused
from jobsheet.ledger.models import CreditNote, HoldStatus, Transfer
from jobsheet.ledger.state import AccountState, readd
from tests.ledger.factories import RESOURCE, T0, cheque, identity

OWNERS = [identity(f"owner{i}") for i in range(3)]
ACCOUNTS = [f"acct-{i}" for i in range(3)]
LIMITS = [Decimal("0.00"), Decimal("50.00"), Decimal("0.00")]
PROVIDER = "acct-provider"

cents = st.integers(min_value=1, max_value=8000).map(lambda c: Decimal(c).scaleb(-2))
index = st.integers(min_value=0, max_value=50)
retry = st.booleans()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(0, 2), cents, retry),
        st.tuples(st.just("cash"), st.integers(0, 2), cents, cents, st.booleans(), retry),
        st.tuples(st.just("recash"), index, st.integers(0, 2), retry),
        st.tuples(st.just("receipt"), index, st.integers(0, 100), retry),
        st.tuples(st.just("refund"), index, retry),
        st.tuples(st.just("advance"), st.integers(1, 90)),
        st.tuples(st.just("deliver"), index, st.booleans()),
    ),
    min_size=1,
    max_size=40,
)


@dataclass
class Bank:
    now: datetime = T0
    deposited: Decimal = Decimal("0.00")
    accounts: dict[str, AccountState] = field(default_factory=dict)
    cheques: list[Cheque] = field(default_factory=list)
    notes: list[CreditNote] = field(default_factory=list)
    closed: dict[str, HoldStatus] = field(default_factory=dict)
    entries: dict[str, list] = field(default_factory=dict)
    step: int = 0

    def __post_init__(self) -> None:
        for owner, account, limit in zip(OWNERS, ACCOUNTS, LIMITS, strict=True):
            self.accounts[account] = AccountState(
                account=account, owner=owner.name, overdraft_limit=limit
            )
        self.accounts[PROVIDER] = AccountState(account=PROVIDER, owner="provider")

    def key(self) -> str:
        self.step += 1
        return f"op-{self.step}"

    def twice(self, again: bool, state: AccountState, apply) -> None:
        """Apply; when ``again``, apply the same operation (same key) again: nothing changes."""
        try:
            apply()
        except Refused:
            pass
        if again:
            before = state.model_dump()
            try:
                apply()
            except Refused:
                pass
            assert state.model_dump() == before

    def run(self, op: tuple) -> None:
        kind = op[0]
        if kind == "deposit":
            _, who, amount, again = op
            state, key = self.accounts[ACCOUNTS[who]], self.key()
            self.twice(again, state, lambda: state.deposit(key, amount, self.now))
            self.deposited += amount
        elif kind == "cash":
            _, who, max_spend, spend, right_recipient, again = op
            chq = cheque(OWNERS[who], account=ACCOUNTS[who], max_spend=str(max_spend), now=self.now)
            self.cheques.append(chq)
            self._cash(chq, spend, PROVIDER if right_recipient else "acct-other", again)
        elif kind == "recash" and self.cheques:
            _, which, _spender, again = op
            chq = self.cheques[which % len(self.cheques)]
            self._cash(chq, chq.max_spend, PROVIDER, again)
        elif kind == "receipt" and self.notes:
            _, which, percent, again = op
            note = self.notes[which % len(self.notes)]
            amount = (note.held * percent / 100).quantize(Decimal("0.01"))
            state, key = self.accounts[note.account], self.key()
            self.twice(again, state, lambda: state.receipt(key, note, amount, self.now))
        elif kind == "refund" and self.notes:
            _, which, again = op
            note = self.notes[which % len(self.notes)]
            state, key = self.accounts[note.account], self.key()
            self.twice(again, state, lambda: state.refund(key, note, self.now))
        elif kind == "advance":
            self.now += timedelta(minutes=op[1])
            for state in self.accounts.values():
                state.expire_holds(self.now)
        elif kind == "deliver":
            _, which, duplicate = op
            pending = [t for s in self.accounts.values() for t in s.transfers]
            if pending:
                self._deliver(pending[which % len(pending)], duplicate)

    def _cash(self, chq: Cheque, spend: Decimal, recipient: str, again: bool) -> None:
        state, key = self.accounts[chq.account], self.key()
        owner = OWNERS[ACCOUNTS.index(chq.account)]
        results: list[CreditNote] = []

        def apply() -> None:
            results.append(
                state.cash_cheque(
                    key,
                    chq,
                    spend=spend,
                    recipient=recipient,
                    resource=RESOURCE,
                    receipt_within=timedelta(minutes=45),
                    keys=[owner.public_record()],
                    now=self.now,
                )
            )

        self.twice(again, state, apply)
        if results:
            assert all(note == results[0] for note in results)
            # A cheque is cashed at most once and never above its max spend.
            assert all(note.cheque_uid != chq.uid for note in self.notes)
            assert results[0].held <= chq.max_spend
            self.notes.append(results[0])

    def _deliver(self, transfer: Transfer, duplicate: bool) -> None:
        target = self.accounts[transfer.to_account]
        for _ in range(2 if duplicate else 1):
            target.credit(
                transfer.transfer_id, transfer.from_account, transfer.amount, "", self.now
            )
            self.accounts[transfer.from_account].transfer_delivered(transfer.transfer_id, self.now)

    def check(self) -> None:
        total = sum(
            (s.available + s.held + s.in_flight for s in self.accounts.values()), Decimal("0.00")
        )
        assert total == self.deposited
        for state in self.accounts.values():
            assert state.balance - state.held >= -state.overdraft_limit
            assert state.balance >= -state.overdraft_limit
            assert state.held == sum((h.note.held for h in state.open_holds()), Decimal("0.00"))
            assert state.in_flight == sum((t.amount for t in state.transfers), Decimal("0.00"))
            assert readd(state.unaudited) == (state.balance, state.held, state.in_flight)
            for uid, hold in state.holds.items():
                if hold.status is not HoldStatus.OPEN:
                    assert self.closed.setdefault(uid, hold.status) is hold.status
                    assert hold.paid <= hold.note.held
                    if hold.status is HoldStatus.REFUNDED:
                        assert hold.paid == 0


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(operations)
def test_money_is_conserved_and_holds_end_exactly_once(ops: list[tuple]) -> None:
    bank = Bank()
    for op in ops:
        bank.run(op)
        bank.check()
    # Nobody acts any more: every hold ends (refunded automatically), all money is delivered.
    bank.run(("advance", 24 * 60))
    while any(s.transfers for s in bank.accounts.values()):
        bank.run(("deliver", 0, False))
    bank.check()
    for state in bank.accounts.values():
        assert not state.open_holds()
        assert state.held == state.in_flight == 0
    assert all(note.uid in bank.closed for note in bank.notes)
