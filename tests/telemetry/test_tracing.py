"""One job is one trace, from the API request that submits it to its settlement, and no span
carries a PAR's secret.

The whole stack runs in this process on the session's real servers (Temporal dev server, S3):
the API, and the jobs, ledger and compute workers on this test's own task queues. Their spans
go to an in-memory exporter through the product's provider (redaction included), installed
for this test only with ``use_tracer_provider``. A process started with JOBSHEET_OTLP_ENDPOINT
sends its spans to that collector over OTLP/HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Interceptor, Replayer

from jobsheet.core.settings import Settings
from jobsheet.core.temporal import connect, data_converter, payload_key_ring
from jobsheet.jobs.models import JobState
from jobsheet.jobs.operations import job_handle
from jobsheet.telemetry.tracing import (
    client_interceptors,
    redact_secrets,
    tracer_provider,
    traces_url,
    use_tracer_provider,
)
from tests.api.signed import Signed
from tests.api.test_ownership import DATA, submit_body
from tests.api_server import start_api
from tests.jobs.conftest import Deployment, deployment
from workflows.job_sheet import JobSheetWorkflow

CALLER_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_TRACE_CONTEXT = {
    "traceparent": f"00-{CALLER_TRACE_ID:032x}-b7ad6b7169203331-01",
    "baggage": "note=" + "x" * 2000,
}
TRACE_HEADER = "_tracer-data"
"""The Temporal header in which TracingInterceptor carries a span's context."""
ROOT = Path(__file__).resolve().parents[2]
SETTLEMENT_SPANS = {
    "RunActivity:run_calculation",  # the compute worker's run
    "RunActivity:receipt_credit_note",  # the charge: receipt the cost, return the rest
    "RunActivity:finish_job",  # the final sheet persisted
    "CompleteWorkflow:JobSheetWorkflow",
}


@pytest.fixture
def tracing_spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process makes during the test, redacted as the product exports them."""
    exporter = InMemorySpanExporter()
    provider = tracer_provider("jobsheet-test", exporter, batch=False)
    previous = use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        use_tracer_provider(previous)
        provider.shutdown()


@pytest.fixture
async def traced(
    tracing_spans: InMemorySpanExporter, queued_settings: Settings
) -> AsyncIterator[Deployment]:
    """The API (instrumented, its Temporal client traced) and every worker role, on a client
    that carries the tracing interceptor, as processes started with JOBSHEET_OTLP_ENDPOINT."""
    api = start_api(queued_settings)
    try:
        client = await connect(api.settings)
        assert client_interceptors() and client.config()["interceptors"]
        async with deployment(client, api.settings) as env:
            yield env
    finally:
        api.stop()


@dataclass
class Trace:
    spans: Sequence[ReadableSpan]

    @property
    def names(self) -> set[str]:
        return {span.name for span in self.spans}

    def named(self, name: str) -> ReadableSpan:
        found = [span for span in self.spans if span.name == name]
        assert found, f"no span {name!r} in {sorted(self.names)}"
        return found[0]


def trace_of(spans: Sequence[ReadableSpan], root: ReadableSpan) -> Trace:
    assert root.context is not None
    return Trace([s for s in spans if s.context and s.context.trace_id == root.context.trace_id])


async def test_a_job_is_one_trace_from_its_submission_to_its_settlement(
    traced: Deployment, tracing_spans: InMemorySpanExporter
) -> None:
    env = traced
    alice = Signed(env.settings.api_url, env.user)
    body = submit_body(env, env.user, account=env.payer, user=env.user.name)
    # A caller's trace context is not taken up: the job's trace is jobsheet's own.
    answer = await alice.post("/v1/jobs", body, headers=CALLER_TRACE_CONTEXT)
    assert answer.status_code == 201, answer.text
    submitted = answer.json()
    uid, run_url = submitted["uid"], submitted["run_url"]
    async with httpx.AsyncClient(timeout=60) as http:
        assert (await http.put(submitted["upload_url"], content=DATA)).status_code == 200
        assert (await http.post(run_url)).status_code == 202
    handle = job_handle(env.client, uid)
    sheet = await asyncio.wait_for(handle.result(), 60)
    assert sheet.state == JobState.SUCCEEDED, sheet.error

    spans = tracing_spans.get_finished_spans()
    submit = next(s for s in spans if s.name == "POST /v1/jobs" and s.kind == SpanKind.SERVER)
    assert submit.parent is None  # the API request is the trace's root
    assert submit.context is not None and submit.context.trace_id != CALLER_TRACE_ID
    job = trace_of(spans, submit)
    # The request's context reached the workflow through the update-with-start...
    assert {
        "StartUpdateWithStartWorkflow:JobSheetWorkflow",
        "RunWorkflow:JobSheetWorkflow",
        "RunActivity:prepare_job",
        "RunActivity:cash_cheque",
        "RunActivity:reserve_contract",
        "RunActivity:issue_submission_pars",
    } <= job.names, sorted(job.names)
    # ...and stayed with the job through the run to its settlement.
    assert job.names >= SETTLEMENT_SPANS, sorted(job.names)
    start = job.named("StartUpdateWithStartWorkflow:JobSheetWorkflow")
    assert start.parent is not None
    assert start.parent.span_id == submit.context.span_id
    assert {s.attributes.get("temporalWorkflowID") for s in job.spans if s.attributes} >= {uid}

    # The run PAR's request is a trace of its own, which the workflow's update span links to.
    run = next(s for s in spans if s.name == "POST /par/run/{uid}/{token}")
    assert run.context is not None and run.context.trace_id != submit.context.trace_id
    handled = [s for s in job.spans if s.name.startswith("HandleUpdate:")]
    assert any(
        link.context.trace_id == run.context.trace_id for s in handled for link in s.links
    ), [s.name for s in handled]

    # No span carries a PAR's secret: the run token, the upload URL's signature.
    token = run_url.rsplit("/", 1)[1]
    signature = httpx.URL(submitted["upload_url"]).params["X-Amz-Signature"]
    exported = [span.to_json() for span in spans]
    assert all(token not in text and signature not in text for text in exported)
    assert run.attributes is not None
    assert run.attributes.get("http.route") == "/par/run/{uid}/{token}"
    assert run.attributes.get("http.target") == f"/par/run/{uid}/[token]"
    assert all(text == redact_secrets(text) for text in exported)

    # The headers the interceptor added change nothing in the workflow's history: it replays
    # with the interceptor and without it.
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    carried = json.loads(started.header.fields[TRACE_HEADER].data)
    assert set(carried) == {"traceparent"}, carried  # no baggage from the caller
    assert carried["traceparent"].split("-")[1] == f"{submit.context.trace_id:032x}"
    converter = data_converter(payload_key_ring(env.settings))
    without: list[Interceptor] = []
    for interceptors in (without, [TracingInterceptor()]):
        replayer = Replayer(
            workflows=[JobSheetWorkflow], data_converter=converter, interceptors=interceptors
        )
        await replayer.replay_workflow(history)


EXPORTING_PROCESS = """
from jobsheet.core.settings import load_settings
from jobsheet.telemetry.tracing import client_interceptors, start_tracing, stop_tracing

provider = start_tracing(load_settings(), service_name="jobsheet-worker-jobs")
assert provider is not None and client_interceptors()
with provider.get_tracer("check").start_as_current_span("a span"):
    pass
stop_tracing()  # what a process that leaves with os._exit does first
"""


class FakeCollector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_process_exports_its_spans_to_the_collector_named_by_the_setting(
    tmp_path: Path,
) -> None:
    FakeCollector.received.clear()
    collector = ThreadingHTTPServer(("127.0.0.1", 0), FakeCollector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{collector.server_address[1]}"
        env = {**os.environ, "JOBSHEET_OTLP_ENDPOINT": base, "JOBSHEET_STATE_DIR": str(tmp_path)}
        done = subprocess.run(
            [sys.executable, "-c", EXPORTING_PROCESS],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    finally:
        collector.shutdown()
        thread.join()
    assert len(FakeCollector.received) == 1
    path, content_type, body = FakeCollector.received[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "jobsheet-worker-jobs"
    assert [span.name for scope in resource_spans.scope_spans for span in scope.spans] == ["a span"]


def test_the_collector_url_takes_the_traces_path_once() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://tempo/otlp/v1/traces") == "https://tempo/otlp/v1/traces"
