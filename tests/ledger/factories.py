"""Building blocks for ledger tests: fixed times, users, accounts held in pure state, cheques."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from jobsheet.identity.keys import Identity, generate_identity
from jobsheet.ledger.cheque import Cheque, write_cheque
from jobsheet.ledger.models import LedgerEntry
from jobsheet.ledger.state import ZERO, AccountState

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RESOURCE = "sha256:" + "ab" * 32


def identity(name: str = "alice", *, now: datetime = T0 - timedelta(days=1)) -> Identity:
    return generate_identity(name, now=now)


def funded(owner: Identity, funds: str = "100.00", *, account: str = "acct-a") -> AccountState:
    state = AccountState(account=account, owner=owner.name)
    if Decimal(funds) > 0:
        state.deposit("opening", Decimal(funds), T0)
    return state


def cheque(
    owner: Identity,
    *,
    account: str = "acct-a",
    recipient: str = "acct-provider",
    resource: str = RESOURCE,
    max_spend: str = "30.00",
    now: datetime = T0,
    valid_for: timedelta = timedelta(hours=1),
) -> Cheque:
    return write_cheque(
        owner,
        account=account,
        recipient=recipient,
        resource=resource,
        max_spend=max_spend,
        now=now,
        valid_for=valid_for,
        uid=f"chq-{uuid.uuid4()}",
    )


def readd(entries: Sequence[LedgerEntry]) -> tuple[Decimal, Decimal, Decimal]:
    """(balance, held, in_flight) from the deltas of an account's entries: the audit check."""
    balance = held = in_flight = ZERO
    for entry in sorted(entries, key=lambda e: e.seq):
        balance += entry.balance_delta
        held += entry.held_delta
        in_flight += entry.in_flight_delta
    return balance, held, in_flight
