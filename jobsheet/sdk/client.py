"""``jobsheet.Client``: submit paid jobs and follow them, without touching Temporal's API."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client as TemporalClient

from jobsheet.authorisation import sign_authorisation
from jobsheet.cheque import write_cheque
from jobsheet.identity import Identity, IdentityError, load_identity
from jobsheet.jobs.client import submit_job
from jobsheet.jobs.models import JobRequest, JobSheet, JobState
from jobsheet.sdk.errors import BadInput, Unavailable
from jobsheet.sdk.job import Job
from jobsheet.sdk.listing import JobSummary, list_jobs
from jobsheet.sdk.local_pars import LocalPars, load_pars, save_pars
from jobsheet.sdk.service_errors import service_call
from jobsheet.sdk.sheets import fetch_sheet
from jobsheet.sdk.transfer import file_digest
from jobsheet.settings import Settings, load_settings
from jobsheet.temporal import connect


class Client:
    """A user's connection to a jobsheet deployment.

    Create it with :meth:`connect`. ``identity`` is the user's signing key, loaded from the
    config directory when first needed: to submit and cancel jobs, not to read them.
    """

    def __init__(
        self, temporal: TemporalClient, settings: Settings, identity: Identity | None = None
    ) -> None:
        self.temporal = temporal
        self.settings = settings
        self._identity = identity

    @classmethod
    async def connect(cls, settings: Settings | None = None, user: str | None = None) -> Client:
        """Connect with ``settings`` (default: from ``JOBSHEET_*``) as ``user`` (default:
        ``settings.user``), whose key is read from the config directory when first needed."""
        settings = settings or load_settings()
        if user:
            settings = settings.model_copy(update={"user": user})
        try:
            temporal = await connect(settings)
        except RuntimeError as exc:
            raise Unavailable(
                f"cannot reach Temporal at {settings.temporal_target}: {exc}"
            ) from None
        return cls(temporal, settings)

    @property
    def identity(self) -> Identity:
        """The user's signing key (read from the config directory on first use)."""
        if self._identity is None:
            if not self.settings.user:
                raise BadInput(
                    "no user: pass user= to Client.connect or set JOBSHEET_USER", reason="NoUser"
                )
            try:
                self._identity = load_identity(
                    self.settings.user, config_dir=self.settings.config_dir
                )
            except IdentityError as exc:
                raise BadInput(str(exc), reason="UnknownUser") from None
        return self._identity

    async def submit(
        self,
        calculation: str,
        params: dict[str, Any] | None,
        input_path: Path | str,
        account: str,
        max_spend: str | int,
        service: str = "standard",
    ) -> Job:
        """Ask for a job, paying with a cheque for at most ``max_spend`` from ``account``.

        Signs the authorisation and the cheque for the request's fingerprint and returns the
        job once it is paid for, with its upload and run PARs (valid until ``expires_at``).
        """
        identity = self.identity
        path = Path(input_path)
        digest = await asyncio.to_thread(file_digest, path)
        absolute = await asyncio.to_thread(os.path.abspath, path)
        try:
            request = JobRequest(
                calculation=calculation,
                service=service,
                parameters=dict(params or {}),
                input_size=digest.size,
                input_sha256=digest.sha256,
                account=account,
                user=identity.name,
            )
            resource = request.fingerprint()
            cheque = write_cheque(
                identity,
                account=account,
                recipient=self.settings.provider_account,
                resource=resource,
                max_spend=str(max_spend),
            )
        except (ValidationError, ValueError) as exc:
            raise BadInput(f"invalid job request: {_first_error(exc)}") from None
        with service_call("submitting the job"):
            result = await submit_job(
                self.temporal,
                self.settings,
                request=request,
                authorisation=sign_authorisation(identity, resource),
                cheque=cheque,
            )
        pars = LocalPars(
            uid=result.uid,
            upload_url=result.upload_url,
            run_url=result.run_url,
            expires_at=result.expires_at,
            input_path=absolute,
        )
        try:
            save_pars(pars, self.settings.config_dir)
        except OSError:
            pass  # a read-only config dir: the caller still holds the PARs in the Job
        return self._job(pars)

    def job(self, uid: str) -> Job:
        """Reattach to job ``uid``; its PARs are known if it was submitted from this machine."""
        pars = load_pars(uid, self.settings.config_dir)
        return self._job(pars) if pars else Job(self, uid)

    def _job(self, pars: LocalPars) -> Job:
        return Job(
            self,
            pars.uid,
            upload_url=pars.upload_url,
            run_url=pars.run_url,
            expires_at=pars.expires_at,
            input_path=Path(pars.input_path) if pars.input_path else None,
        )

    async def load(self, uid: str) -> JobSheet:
        """The job sheet: from the workflow while it runs, else from the object store."""
        return await fetch_sheet(self.temporal, self.settings, uid)

    async def list_jobs(
        self,
        state: JobState | str | None = None,
        account: str | None = None,
        user: str | None = None,
    ) -> list[JobSummary]:
        """Jobs of this deployment by state, account and user, newest first."""
        if isinstance(state, str) and not isinstance(state, JobState):
            try:
                state = JobState(state)
            except ValueError:
                names = ", ".join(s.value for s in JobState)
                raise BadInput(f"unknown state {state!r}; choose one of {names}") from None
        with service_call("listing jobs"):
            return await list_jobs(
                self.temporal, self.settings, state=state, account=account, user=user
            )


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))
    return str(exc)
