"""``jobsheet.Client``: a user's jobs, keys and accounts, through the public HTTP API only.

The one address a user needs is ``JOBSHEET_API_URL``; the one secret is their Ed25519 key in the
config directory. Every call is a signed request (see :mod:`jobsheet.sdk.session`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from jobsheet.contracts.api import (
    CalculationList,
    JobList,
    JobSummary,
    OpenAccountRequest,
    SignupRequest,
    StatementView,
    SubmitAnswer,
    SubmitRequest,
    UserView,
    strict_public_key,
)
from jobsheet.core.names import InvalidName, check_name
from jobsheet.core.settings import Settings, load_settings
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.identity.key_orders import sign_add_key, sign_revoke_key
from jobsheet.identity.keys import (
    Identity,
    IdentityError,
    PublicKeyRecord,
    b64,
    generate_identity,
    key_id_for,
    key_path,
    load_identity,
    save_identity,
)
from jobsheet.jobs.models import JobRequest, JobSheet, JobState
from jobsheet.ledger.cheque import write_cheque
from jobsheet.ledger.models import BalanceView
from jobsheet.ledger.orders import sign_deposit
from jobsheet.sdk.errors import BadInput, Refused
from jobsheet.sdk.job import Job
from jobsheet.sdk.local_pars import LocalPars, load_pars, save_pars
from jobsheet.sdk.session import ApiSession, RetryPolicy
from jobsheet.sdk.transfer import NO_INPUT, file_digest


class Client:
    """A user's connection to a jobsheet deployment's public API.

    Create it with :meth:`connect` (or directly). ``identity`` is the user's signing key, read
    from the config directory when a signed call first needs it. Close it with :meth:`aclose`
    (or ``async with``) to release its HTTP connections.
    """

    def __init__(
        self,
        settings: Settings,
        identity: Identity | None = None,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._identity = identity
        self._payee: str | None = None
        self.api = ApiSession(
            settings.api_url, lambda: self.identity, retry=retry, transport=transport
        )

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        user: str | None = None,
        *,
        identity: Identity | None = None,
    ) -> Client:
        """A client for ``settings`` (default: from ``JOBSHEET_*``) acting as ``user`` (default:
        ``settings.user``, or ``identity``'s name), whose key is read when first needed."""
        settings = settings or load_settings()
        name = user or (identity.name if identity else None)
        if name:
            settings = settings.model_copy(update={"user": name})
        return cls(settings, identity)

    async def aclose(self) -> None:
        await self.api.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

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

    @property
    def user(self) -> str:
        return self._identity.name if self._identity else self.identity.name

    # --- users and keys ---------------------------------------------------------------------

    async def signup(
        self, name: str | None = None, *, identity: Identity | None = None
    ) -> UserView:
        """Create user ``name`` (default: ``settings.user``): make a key pair, register its public
        half, and only then keep the private key (mode 0600) in the config directory.

        ``identity`` registers that key instead (one already kept, e.g. for a deployment that
        was reset); it is saved if the config directory does not hold it yet.
        """
        name = (identity.name if identity else name) or self.settings.user
        if not name:
            raise BadInput("name the user to create, or set JOBSHEET_USER", reason="NoUser")
        path = key_path(name, self.settings.config_dir)
        if identity is None:
            try:
                identity = generate_identity(name)
            except IdentityError as exc:
                raise BadInput(str(exc), reason="InvalidName") from None
            if path.exists():
                raise BadInput(
                    f"{path} already holds a key for {name}; use `jobsheet user rotate {name}`",
                    reason="KeyExists",
                )
        body = SignupRequest(name=name, public_key=b64(identity.public_raw))
        answer = await self.api.call(
            "POST", "/v1/users", body=body, signed=False, what=f"creating user {name}"
        )
        view = answer.parse(UserView)
        if not path.exists():
            save_identity(identity, config_dir=self.settings.config_dir)
        self.settings = self.settings.model_copy(update={"user": name})
        self._identity = identity
        return view

    async def keys(self, name: str | None = None) -> UserView:
        """The registered public keys of ``name`` (default: this user), with their periods."""
        name = self._name(name, what="user name")
        answer = await self.api.call(
            "GET",
            f"/v1/users/{name}",
            what=f"reading the keys of {name}",
            missing=f"user {name} does not exist",
        )
        return answer.parse(UserView)

    async def add_key(self, public_key: str, *, retire_others: bool = False) -> UserView:
        """Register another key of this user (base64 of its raw 32 public bytes), on an order
        signed with the current key; ``retire_others`` makes it a rotation."""
        try:
            record = PublicKeyRecord(
                key_id=key_id_for(base64.b64decode(strict_public_key(public_key))),
                public_key=public_key,
                valid_from=datetime.now(UTC),
            )
        except ValueError as exc:
            raise BadInput(str(exc), reason="InvalidKey") from None
        current = self.identity
        order = sign_add_key(
            current,
            record,
            idempotency_key=f"key-{uuid.uuid4()}",
            retire_others=retire_others,
        )
        answer = await self.api.call(
            "POST",
            f"/v1/users/{current.name}/keys",
            body=order,
            what=f"adding a key of {current.name}",
            missing=f"user {current.name} does not exist",
        )
        return answer.parse(UserView)

    async def rotate_key(self) -> UserView:
        """Register a new key and retire the older ones (their past signatures stay valid); the
        new private key replaces the current one in the config directory (the old file is kept
        beside it)."""
        fresh = generate_identity(self.identity.name)
        view = await self.add_key(b64(fresh.public_raw), retire_others=True)
        save_identity(fresh, config_dir=self.settings.config_dir)
        self._identity = fresh
        return view

    async def revoke_key(self, key_id: str, *, user: str | None = None) -> PublicKeyRecord:
        """Revoke key ``key_id`` of ``user`` (default: this user): from now on it signs nothing.
        The order is signed with this user's key: the operator may revoke anyone's key (a stolen
        one), any other user only their own."""
        name = self._name(user, what="user name")
        if not key_id or not all(c.isalnum() or c in ":_-" for c in key_id):
            raise BadInput(f"invalid key id {key_id!r}", reason="InvalidKey")
        order = sign_revoke_key(
            self.identity, user=name, key_id=key_id, idempotency_key=f"revoke-{uuid.uuid4()}"
        )
        answer = await self.api.call(
            "POST",
            f"/v1/users/{name}/keys/{key_id}/revoke",
            body=order,
            what=f"revoking key {key_id} of {name}",
            missing=f"user {name} has no key {key_id}",
        )
        return answer.parse(PublicKeyRecord)

    # --- accounts ---------------------------------------------------------------------------

    async def open_account(self, account: str | None = None) -> BalanceView:
        """Open an account owned by this user (a new uid unless ``account`` names one)."""
        if account is not None:
            self._name(account, what="account name")
        answer = await self.api.call(
            "POST",
            "/v1/accounts",
            body=OpenAccountRequest(account=account),
            idempotency_key=str(uuid.uuid4()),
            what="opening the account",
        )
        return answer.parse(BalanceView)

    async def balance(self, account: str) -> BalanceView:
        """Balance, held, available and in-flight money of ``account`` (yours, or any for the
        operator)."""
        account = self._name(account, what="account name")
        answer = await self.api.call(
            "GET",
            f"/v1/accounts/{account}",
            what=f"reading account {account}",
            missing=f"account {account} does not exist",
        )
        return answer.parse(BalanceView)

    async def statement(self, account: str, *, limit: int = 50) -> StatementView:
        """The most recent ``limit`` ledger entries of ``account`` and its balance."""
        account = self._name(account, what="account name")
        answer = await self.api.call(
            "GET",
            f"/v1/accounts/{account}/statement",
            params={"limit": str(limit)},
            what=f"reading the statement of {account}",
            missing=f"account {account} does not exist",
        )
        return answer.parse(StatementView)

    async def deposit(
        self,
        account: str,
        amount: Decimal | int | str,
        *,
        idempotency_key: str | None = None,
        reference: str = "",
    ) -> BalanceView:
        """Add ``amount`` to ``account``: the operator's call, signed with the operator's key
        (see :func:`jobsheet.ledger.orders.load_operator`). The same ``idempotency_key`` (default:
        a new one) deposits once; its answer is the first one."""
        account = self._name(account, what="account name")
        try:
            order = sign_deposit(
                self.identity,
                account=account,
                amount=amount,
                idempotency_key=idempotency_key or f"dep-{uuid.uuid4()}",
                reference=reference,
            )
        except (ValidationError, ValueError) as exc:
            raise BadInput(
                f"invalid deposit: {_first_error(exc)}", reason="InvalidAmount"
            ) from None
        answer = await self.api.call(
            "POST",
            f"/v1/accounts/{account}/deposits",
            body=order,
            what=f"depositing into {account}",
            missing=f"account {account} does not exist",
        )
        return answer.parse(BalanceView)

    # --- calculations and jobs --------------------------------------------------------------

    async def calculations(self) -> CalculationList:
        """The calculations the operator offers (parameters, services, the most one run costs)
        and the payee, the account every cheque must name as its recipient."""
        answer = await self.api.call(
            "GET", "/v1/calculations", signed=False, what="listing calculations"
        )
        offer = answer.parse(CalculationList)
        self._payee = offer.payee
        return offer

    async def payee(self) -> str:
        """The account cheques pay (asked of the API once per client)."""
        if self._payee is None:
            await self.calculations()
        assert self._payee is not None
        return self._payee

    async def submit(
        self,
        calculation: str,
        params: dict[str, Any] | None,
        input_path: Path | str | None,
        account: str,
        max_spend: str | int,
        service: str = "standard",
    ) -> Job:
        """Ask for a job, paying with a cheque for at most ``max_spend`` from ``account``.

        Signs the authorisation and the cheque for the request's fingerprint and returns the
        job once it is paid for, with its upload and run PARs (valid until ``expires_at``) and
        what the cheque held. ``input_path`` None: the calculation reads no input, and the
        job's upload is an empty object (``job.upload()`` sends it). A submit whose answer was
        lost is sent again unchanged: the API answers it with the same job, never a second one.
        """
        identity = self.identity
        if input_path is None:
            digest, absolute = NO_INPUT, None
        else:
            path = Path(input_path)
            digest = await asyncio.to_thread(file_digest, path)
            absolute = await asyncio.to_thread(os.path.abspath, path)
        payee = await self.payee()
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
                recipient=payee,
                resource=resource,
                max_spend=str(max_spend),
            )
        except (ValidationError, ValueError) as exc:
            raise BadInput(f"invalid job request: {_first_error(exc)}") from None
        body = SubmitRequest(
            request=request, authorisation=sign_authorisation(identity, resource), cheque=cheque
        )
        answer = await self.api.call("POST", "/v1/jobs", body=body, what="submitting the job")
        result = answer.parse(SubmitAnswer)
        pars = LocalPars(
            uid=result.uid,
            upload_url=result.upload_url,
            run_url=result.run_url,
            expires_at=result.expires_at,
            input_path=absolute,
            no_input=input_path is None,
        )
        try:
            save_pars(pars, self.settings.config_dir)
        except OSError:
            pass  # a read-only config dir: the caller still holds the PARs in the Job
        job = self._job(pars)
        job.held = result.held
        return job

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
            no_input=pars.no_input,
        )

    async def load(self, uid: str) -> JobSheet:
        """The job sheet as it stands now (with live run progress while the job runs)."""
        answer = await self.api.call(
            "GET",
            f"/v1/jobs/{_job_uid(uid)}",
            what=f"reading job {uid}",
            missing=f"job {uid} does not exist",
        )
        sheet = answer.parse(JobSheet)
        if sheet.is_null():
            raise Refused(f"reading job {uid}: the API answered an empty sheet", reason="Empty")
        return sheet

    async def list_jobs(
        self,
        state: JobState | str | None = None,
        account: str | None = None,
        user: str | None = None,
    ) -> list[JobSummary]:
        """Your jobs (every user's, for the operator) by state, account and user, newest first."""
        if isinstance(state, str) and not isinstance(state, JobState):
            try:
                state = JobState(state)
            except ValueError:
                names = ", ".join(s.value for s in JobState)
                raise BadInput(f"unknown state {state!r}; choose one of {names}") from None
        params = {
            "state": state.value if state else None,
            "account": self._name(account, what="account name") if account else None,
            "user": self._name(user, what="user name") if user else None,
        }
        answer = await self.api.call("GET", "/v1/jobs", params=params, what="listing jobs")
        return answer.parse(JobList).jobs

    def _name(self, name: str | None, *, what: str) -> str:
        """A user or account name that may go into a URL; this user's own name by default."""
        try:
            return check_name(name or self.user, what=what)
        except InvalidName as exc:
            raise BadInput(str(exc), reason="InvalidName") from None


def _job_uid(uid: str) -> str:
    """``uid`` if it can be part of a URL path (the API answers 404 for any that is not a job)."""
    if not uid or not all(c.isalnum() or c in "-_." for c in uid):
        raise BadInput(f"invalid job uid {uid!r}", reason="InvalidUid")
    return uid


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))
    return str(exc)
