"""Contracts a contract book holds in its own state, as every book did before each contract
became a workflow of its own (docs/contract-book.md).

A book begun before that change keeps all its contracts here until it continues as new; the
run after it carries the ones left (held, or ended within a day) and keeps expiring them, and
takes no new ones. A pure state machine: ``now`` is always an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from jobsheet.compute.models import (
    ComputeContract,
    ContractRecord,
    ContractState,
    ReleaseResult,
)

FORGET_ENDED_AFTER = timedelta(days=1)


class ContractRecords:
    """Contract records by contract id: held until released or their deadline passes."""

    def __init__(self, records: dict[str, ContractRecord]) -> None:
        self._records = dict(records)

    def as_dict(self) -> dict[str, ContractRecord]:
        """Every record kept, for the input of the next run."""
        return self._records

    def get(self, contract_id: str) -> ContractRecord | None:
        return self._records.get(contract_id)

    def held(self) -> list[ContractRecord]:
        return [r for r in self._records.values() if r.state == ContractState.HELD]

    def held_count(self) -> int:
        return sum(1 for r in self._records.values() if r.state == ContractState.HELD)

    def hold(self, contract: ComputeContract) -> ContractRecord:
        record = ContractRecord(contract=contract)
        self._records[contract.contract_id] = record
        return record

    def release(self, contract_id: str, now: datetime) -> ReleaseResult:
        """Release a held contract; an ended or unknown one is left as it is."""
        record = self._records.get(contract_id)
        if record is None:
            return ReleaseResult(contract_id=contract_id, released_now=False, state=None)
        if record.state != ContractState.HELD:
            return ReleaseResult(contract_id=contract_id, released_now=False, state=record.state)
        self._end(record, ContractState.RELEASED, now)
        return ReleaseResult(
            contract_id=contract_id, released_now=True, state=ContractState.RELEASED
        )

    def expire_due(self, now: datetime) -> bool:
        """Expire every held contract whose deadline has come; True when one was."""
        expired = False
        for record in list(self._records.values()):
            if record.state == ContractState.HELD and record.contract.deadline <= now:
                self._end(record, ContractState.EXPIRED, now)
                expired = True
        return expired

    def earliest_deadline(self) -> datetime | None:
        return min((r.contract.deadline for r in self.held()), default=None)

    def until_next_deadline(self, now: datetime) -> timedelta | None:
        """How long until the earliest held deadline (at least a millisecond), or None."""
        earliest = self.earliest_deadline()
        if earliest is None:
            return None
        return max(earliest - now, timedelta(milliseconds=1))

    def forget_ended(self, now: datetime) -> None:
        """Drop the records that ended more than a day ago."""
        for contract_id, record in list(self._records.items()):
            if record.ended_at is not None and now - record.ended_at > FORGET_ENDED_AFTER:
                del self._records[contract_id]

    def _end(self, record: ContractRecord, state: ContractState, now: datetime) -> None:
        self._records[record.contract.contract_id] = ContractRecord(
            contract=record.contract, state=state, ended_at=now
        )
