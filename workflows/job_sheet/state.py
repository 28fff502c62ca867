"""What one job's workflow knows: the sheet (the only record of the job's facts), the policy,
the held contract (whose run token the sheet never shows), the PARs handed out, and the saga."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jobsheet.compute.models import ComputeContract
    from jobsheet.core import search_attributes
    from jobsheet.jobs import details
    from jobsheet.jobs.messages import JobConfig, JobStart
    from jobsheet.jobs.models import JobSheet, JobState, ParKind, ParMetadata, TimelineEntry
    from jobsheet.pars.write import WritePar

from workflows.job_sheet.saga import Saga

# States not worth a search attribute event: set at the start, or over in a moment.
QUIET_STATES = frozenset({JobState.SUBMITTED, JobState.SETTLING})
# Names of the saga's steps.
RELEASE_CONTRACT = "release the compute contract"
REFUND_HOLD = "refund the hold"


@dataclass
class JobRun:
    start: JobStart
    sheet: JobSheet
    policy: JobConfig | None = None
    contract: ComputeContract | None = None
    write_par: WritePar | None = None
    upload_url: str = ""
    triggered: bool = False
    ran: bool = False
    """The sheet was persisted as running: the API may have granted writes for the write PAR."""
    cancel_reason: str | None = None
    saga: Saga = field(default_factory=Saga)

    @classmethod
    def for_start(cls, start: JobStart) -> JobRun:
        sheet = JobSheet(uid=start.uid, request=start.request, authorisation=start.authorisation)
        return cls(start=start, sheet=sheet)

    @property
    def uid(self) -> str:
        return self.start.uid

    @property
    def config(self) -> JobConfig:
        assert self.policy is not None, "the policy is known once the job is prepared"
        return self.policy

    @property
    def held_contract(self) -> ComputeContract:
        assert self.contract is not None, "the contract is held once the job is paid for"
        return self.contract

    @property
    def deadline(self) -> datetime:
        assert self.sheet.expires_at is not None, "the deadline is set once the job is prepared"
        return self.sheet.expires_at

    def change(self, state: JobState, note: str) -> None:
        """Move the sheet to ``state``: its timeline, the Web UI's details and the JobState search
        attribute when the job was started with one."""
        self.sheet.state = state
        self.sheet.timeline.append(TimelineEntry(state=state, at=workflow.now(), note=note))
        workflow.set_current_details(details.current_details(self.sheet))
        attribute = search_attributes.JOB_STATE
        if state not in QUIET_STATES and attribute in workflow.info().typed_search_attributes:
            workflow.upsert_search_attributes([attribute.value_set(state.value)])

    def record_par(
        self,
        kind: ParKind,
        target: str,
        issued_at: datetime,
        expires_at: datetime,
        *,
        token_sha256: str | None = None,
    ) -> None:
        self.sheet.pars.append(
            ParMetadata(
                kind=kind,
                target=target,
                issued_at=issued_at,
                expires_at=expires_at,
                token_sha256=token_sha256,
            )
        )

    def close_pars(self, *kinds: ParKind) -> None:
        now = workflow.now()
        for par in self.sheet.pars:
            if par.closed_at is None and (not kinds or par.kind in kinds):
                par.closed_at = min(now, par.expires_at)
