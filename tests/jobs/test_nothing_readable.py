"""Nothing readable in Temporal: after every way a job can go, no workflow's raw history, memo,
search attributes, summary or details holds a PAR, a token or a signature.

One deployment runs the happy path and every compensation path (a rejected submission, a
cancellation while awaiting upload and one while running, a failed run, an expiry), then each
workflow on the test's task queues (jobs, accounts, users, the contract book) is read with a
client that holds no payload key, as anyone who reaches Temporal, its database or its Web UI
would read it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.history.v1 import History
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client, WorkflowUpdateFailedError

from jobsheet.core.payload_codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    is_encrypted,
)
from jobsheet.core.settings import Settings
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.messages import SubmitResult, cancel_resource
from jobsheet.jobs.models import JobRequest, JobState, job_uid_for
from jobsheet.jobs.operations import cancel_job, submit_job
from jobsheet.ledger.cheque import write_cheque
from tests.histories import decrypt_in_place
from tests.jobs.conftest import TEST_CALCULATIONS, Deployment, deployment

EXPIRY_SECONDS = 12
ALWAYS_SECRET = ("X-Amz-Signature", "X-Amz-Credential", "wp1.")
LONG_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{80,}={0,2}")
"""A run this long is a signature (64 bytes are 86 characters) or a key, never a name."""
IN_CLEAR = (
    ".indexed_fields[",  # search attributes: the server indexes them (state, account, user...)
    "marker_recorded_event_attributes.details[patch-data]",  # the SDK's patch ids
    "marker_recorded_event_attributes.details[data]",  # the SDK's local activity bookkeeping
)
"""Where a payload may be in clear (and is still searched): what the server or the SDK's core
writes itself, outside any codec."""
SERVER_CONSTANTS = {
    # The server's own details of an activity cancelled before any worker started it (a job
    # cancelled while its run waits for a compute worker).
    ("activity_task_canceled_event_attributes.details", b'"ACTIVITY_ID_NOT_STARTED"'),
}
"""Payloads the server writes in clear itself, exactly: where they sit and their data."""


@dataclass
class Secrets:
    """What the test handed out or signed: none of it may be readable in Temporal."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)

    def add_url(self, url: str) -> None:
        """A PAR URL: itself, its presigned signature, its last path part (a token)."""
        self.add(url)
        query = parse_qs(urlsplit(url).query)
        self.add(*query.get("X-Amz-Signature", []))
        if not query:
            self.add(urlsplit(url).path.rsplit("/", 1)[1])

    def found_in(self, text: str) -> list[str]:
        hits = [s for s in ALWAYS_SECRET if s in text]
        hits += [s[:12] + "…" for s in self.values if s in text]
        hits += [m[:12] + "…" for m in LONG_BASE64.findall(text)]
        return hits


@dataclass
class Leak:
    where: str
    what: list[str]


def scan(message: Message, where: str, secrets: Secrets) -> Iterator[Leak]:
    """Every string, byte string and unencrypted payload in ``message`` checked for secrets;
    every payload but a search attribute must be encrypted."""
    if isinstance(message, Payload):
        if is_encrypted(message):
            if set(message.metadata) != {"encoding", KEY_ID_METADATA}:
                yield Leak(where, [f"metadata {sorted(message.metadata)}"])
            return
        server_constant = any(
            place in where and message.data == data for place, data in SERVER_CONSTANTS
        )
        if not server_constant and not any(allowed in where for allowed in IN_CLEAR):
            yield Leak(where, ["a payload in clear"])
        text = message.data.decode(errors="replace") + " ".join(
            v.decode(errors="replace") for v in message.metadata.values()
        )
        if hits := secrets.found_in(text):
            yield Leak(where, hits)
        return
    for descriptor, value in message.ListFields():
        path = f"{where}.{descriptor.name}"
        if descriptor.message_type is not None:
            if descriptor.message_type.GetOptions().map_entry:
                items = value.items()
                for key, item in items:
                    if hits := secrets.found_in(str(key)):
                        yield Leak(f"{path}[key]", hits)
                    if isinstance(item, Message):
                        yield from scan(item, f"{path}[{key}]", secrets)
                    elif hits := secrets.found_in(str(item)):
                        yield Leak(f"{path}[{key}]", hits)
            elif descriptor.is_repeated:
                for n, item in enumerate(value):
                    yield from scan(item, f"{path}[{n}]", secrets)
            else:
                yield from scan(value, path, secrets)
            continue
        items = value if descriptor.is_repeated else [value]
        for item in items:
            text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
            if hits := secrets.found_in(text):
                yield Leak(path, hits)


@pytest.fixture
async def env(client: Client, job_settings: Settings) -> AsyncIterator[Deployment]:
    """One deployment with the test calculations and a short expiry."""
    settings = job_settings.model_copy(
        update={"calculations_file": TEST_CALCULATIONS, "job_expiry_seconds": EXPIRY_SECONDS}
    )
    async with deployment(client, settings) as deployed:
        yield deployed


class Jobs:
    """Submits as the deployment's user and remembers every secret it hands out or gets."""

    def __init__(self, env: Deployment, secrets: Secrets, http: httpx.AsyncClient) -> None:
        self.env = env
        self.secrets = secrets
        self.http = http
        self.uids: list[str] = []

    def request(self, data: bytes, calculation: str, **parameters: object) -> JobRequest:
        return self.env.request(data, calculation, service="test", **parameters)

    async def submit(self, request: JobRequest) -> SubmitResult:
        env = self.env
        resource = request.fingerprint()
        authorisation = sign_authorisation(env.user, resource)
        cheque = write_cheque(
            env.user, account=env.payer, recipient=env.provider, resource=resource, max_spend="20"
        )
        self.secrets.add(authorisation.signature, cheque.signature)
        self.uids.append(job_uid_for(authorisation.signature))
        submitted = await submit_job(
            env.client, env.settings, request=request, authorisation=authorisation, cheque=cheque
        )
        self.secrets.add_url(submitted.upload_url)
        self.secrets.add_url(submitted.run_url)
        return submitted

    async def upload(self, submitted: SubmitResult, data: bytes) -> None:
        assert (await self.http.put(submitted.upload_url, content=data)).status_code == 200

    async def trigger(self, submitted: SubmitResult) -> None:
        """Through the run PAR, as a user does: the API calls Temporal."""
        answer = await self.http.post(submitted.run_url)
        assert answer.status_code == 202, answer.text

    async def cancel(self, uid: str) -> None:
        authorisation = sign_authorisation(self.env.user, cancel_resource(uid))
        self.secrets.add(authorisation.signature)
        await cancel_job(self.env.client, uid, authorisation)


async def run_every_path(env: Deployment, jobs: Jobs, marker: str) -> dict[str, JobState]:
    """The happy path and each compensation path: each job's uid and how it must end."""
    data = b"nothing readable\n"
    # Expiry: uploaded, never triggered; the rest runs while its deadline nears.
    expiring = await jobs.submit(jobs.request(data, "echo"))
    await jobs.upload(expiring, data)

    with pytest.raises(WorkflowUpdateFailedError):  # rejected: no such calculation
        await jobs.submit(jobs.request(data, "no-such-calculation"))
    rejected = jobs.uids[-1]

    waiting = await jobs.submit(jobs.request(data, "echo"))
    await jobs.cancel(waiting.uid)

    happy = await jobs.submit(jobs.request(data, "echo"))
    await jobs.upload(happy, data)
    await jobs.trigger(happy)
    sheet = await env.wait_for(happy.uid, JobState.SUCCEEDED, JobState.FAILED)
    assert sheet.state == JobState.SUCCEEDED, sheet.error
    for par in (await env.downloads(happy.uid)).pars:
        jobs.secrets.add_url(par.url)

    failing = await jobs.submit(jobs.request(data, "fail"))
    await jobs.upload(failing, data)
    await jobs.trigger(failing)

    running = await jobs.submit(jobs.request(data, "long", marker=marker))
    await jobs.upload(running, data)
    await jobs.trigger(running)
    await env.wait_for(running.uid, JobState.RUNNING)
    await jobs.cancel(running.uid)

    ends = {
        happy.uid: JobState.SUCCEEDED,
        expiring.uid: JobState.EXPIRED,
        rejected: JobState.REJECTED,
        waiting.uid: JobState.CANCELLED,
        failing.uid: JobState.FAILED,
        running.uid: JobState.CANCELLED,
    }
    for uid, state in ends.items():
        sheet = await env.wait_for(uid, *[s for s in JobState if s.terminal], within=60)
        assert sheet.state == state, (uid, sheet.error)
    return ends


async def current_details(raw: Client, workflow_id: str, run_id: str) -> Message:
    """What the Web UI asks a workflow for its summary and current details
    (``workflow.set_current_details``), as the raw answer."""
    request = QueryWorkflowRequest(
        namespace=raw.namespace,
        execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
        query=WorkflowQuery(query_type="__temporal_workflow_metadata"),
    )
    return await raw.workflow_service.query_workflow(request)


async def read_everything(
    raw: Client, queues: list[str], secrets: Secrets, *, jobs_queue: str
) -> dict[str, int]:
    """Scan every workflow on ``queues`` (raw listing, description, history and, for jobs, the
    current details); fail on a leak. Returns how many workflows each queue held."""
    leaks: list[Leak] = []
    counts: dict[str, int] = {}
    for queue in queues:
        counts[queue] = 0
        async for execution in raw.list_workflows(f"TaskQueue = '{queue}'"):
            counts[queue] += 1
            name = f"{execution.id}/{execution.run_id}"
            handle = raw.get_workflow_handle(execution.id, run_id=execution.run_id)
            leaks += scan(execution.raw_info, f"{name} list", secrets)
            description = await handle.describe()
            leaks += scan(description.raw_description, f"{name} describe", secrets)
            history = await handle.fetch_history()
            leaks += scan(History(events=history.events), f"{name} history", secrets)
            if queue == jobs_queue:
                answer = await current_details(raw, execution.id, execution.run_id)
                leaks += scan(answer, f"{name} current details", secrets)
    assert not leaks, "\n".join(f"{leak.where}: {leak.what}" for leak in leaks[:20])
    return counts


async def test_no_pars_tokens_or_signatures_are_readable_in_temporal(
    env: Deployment, client: Client, tmp_path
) -> None:
    secrets = Secrets()
    async with httpx.AsyncClient(timeout=30) as http:
        ends = await run_every_path(env, Jobs(env, secrets, http), str(tmp_path / "marker"))
    uids = list(ends)
    assert len(secrets.values) > 15

    # A client without the payload keys: what anyone who reaches Temporal sees.
    config = client.service_client.config
    raw = await Client.connect(config.target_host, namespace=client.namespace)
    settings = env.settings
    queues = [
        settings.task_queue_jobs,
        settings.task_queue_ledger,
        settings.compute_task_queue("test"),
    ]

    async def listed() -> dict[str, int]:
        while True:  # visibility follows the histories by a moment
            counts: dict[str, int] = {}
            for queue in queues:
                counts[queue] = (await raw.count_workflows(f"TaskQueue = '{queue}'")).count
            if counts[queues[0]] >= len(uids) and counts[queues[1]] >= 4 and counts[queues[2]]:
                return counts
            await asyncio.sleep(0.2)

    await asyncio.wait_for(listed(), 30)
    counts = await read_everything(raw, queues, secrets, jobs_queue=queues[0])
    assert counts[queues[0]] >= len(uids) and counts[queues[2]] >= 1, counts

    # The scan would see them: opened with the keys, the happy job's history shows its run
    # token, its presigned URLs, the write capability and the signatures.
    codec = client.data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec)
    happy = raw.get_workflow_handle(uids[0])  # the happy path's job
    history = History(events=(await happy.fetch_history()).events)
    decrypt_in_place(history, codec)
    found = {hit for leak in scan(history, "opened", secrets) for hit in leak.what}
    assert {"X-Amz-Signature", "wp1."} <= found, found
    assert len(found) > 5, found


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scanner itself: a payload in clear, a secret in a string, a stray long base64."""
    secrets = Secrets()
    token = uuid.uuid4().hex * 2
    secrets.add(token)
    history = History()
    event = history.events.add(event_id=1)
    event.workflow_execution_started_event_attributes.identity = f"worker {token}"
    event.workflow_execution_started_event_attributes.input.payloads.add(
        metadata={"encoding": b"json/plain"}, data=b'"http://s3/?X-Amz-Signature=1"'
    )
    sealed = event.workflow_execution_started_event_attributes.input.payloads.add(
        metadata={"encoding": ENCODING, KEY_ID_METADATA: b"k"}, data=b"wp1." + b"A" * 100
    )
    assert sealed.data.startswith(b"wp1.")  # ciphertext is never read as text
    event.workflow_execution_started_event_attributes.search_attributes.indexed_fields[
        "JobState"
    ].CopyFrom(Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"B" * 90 + b'"'))
    leaks = [(leak.where, leak.what) for leak in scan(history, "h", secrets)]
    started = "h.events[0].workflow_execution_started_event_attributes"
    assert sorted(leaks) == sorted(
        [
            (f"{started}.identity", [token[:12] + "…"]),
            (f"{started}.input.payloads[0]", ["a payload in clear"]),
            (f"{started}.input.payloads[0]", ["X-Amz-Signature"]),
            (f"{started}.search_attributes.indexed_fields[JobState]", ["B" * 12 + "…"]),
        ]
    )
