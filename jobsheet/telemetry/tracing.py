"""OpenTelemetry traces through Temporal's tracing interceptor and the API.

A job is one trace. The API request that submits it is the root span; the update-with-start
carries its context into the job's workflow (in a Temporal header), and every activity the
workflow runs, and every Temporal call those activities make, joins that trace, down to the
settlement's receipt and the final persist. A later request about the job (the run PAR, a
cancellation) is a trace of its own, linked from the workflow's ``HandleUpdate`` span.

Tracing is on in a process only when ``JOBSHEET_OTLP_ENDPOINT`` is set (``start_tracing``);
otherwise no client carries the interceptor and the API is not instrumented, so a process that
does not trace pays nothing. Workflow determinism is untouched either way: the interceptor adds
a header to the commands it sees and creates no command of its own.

Every span passes through ``redact_secrets`` before it is exported: a PAR's URL is a capability,
so PAR and codec tokens in paths and presigned-URL signatures never leave the process.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    Span,
    SpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Status
from opentelemetry.util.types import Attributes, AttributeValue
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from jobsheet.core.settings import Settings
from jobsheet.telemetry.redaction import redact_secrets

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

INSTRUMENTATION_SCOPE = "jobsheet"
TRACES_PATH = "/v1/traces"
UNTRACED_API_PATHS = "/healthz$"
"""Requests the API answers without a span: health checks arrive every few seconds."""

_TRACE_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
_process_provider: TracerProvider | None = None


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for ``endpoint``: a collector's base URL such as
    ``http://otel-collector:4318`` gets ``/v1/traces`` appended (as the OTLP exporters do with
    ``OTEL_EXPORTER_OTLP_ENDPOINT``); a URL already ending in ``/v1/traces`` is used as it is."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def tracer_provider(
    service_name: str, exporter: SpanExporter, *, batch: bool = True
) -> TracerProvider:
    """A provider whose spans name ``service_name``, are redacted, then go to ``exporter``
    (in batches from a background thread, or one by one as they end, for tests)."""
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False
    )
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(RedactingSpanProcessor(processor))
    return provider


def start_tracing(settings: Settings, service_name: str) -> TracerProvider | None:
    """Export this process's spans over OTLP/HTTP when ``settings.otlp_endpoint`` is set.

    Call it before the process connects to Temporal or builds the API. The spans still queued
    are flushed at interpreter exit; a program that leaves with ``os._exit`` calls
    ``stop_tracing`` first.
    """
    if not settings.otlp_endpoint:
        return None
    exporter = OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint))
    provider = tracer_provider(service_name, exporter)
    use_tracer_provider(provider)
    # Libraries that trace through the global API (none today) join the same traces.
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)
    return provider


def stop_tracing() -> None:
    """Flush and shut down this process's tracing, if on (idempotent)."""
    provider = use_tracer_provider(None)
    if provider is not None:
        provider.shutdown()


def use_tracer_provider(provider: TracerProvider | None) -> TracerProvider | None:
    """Make ``provider`` the one this process's Temporal clients and API trace with (None:
    tracing off); returns the previous one. The global OpenTelemetry provider can be set once
    per process, so a test installs its own provider here and puts the previous one back."""
    global _process_provider
    previous, _process_provider = _process_provider, provider
    return previous


def client_interceptors() -> list[Interceptor]:
    """The interceptors every Temporal client (and the workers made from it) carries: Temporal's
    tracing interceptor when this process traces, none otherwise."""
    if _process_provider is None:
        return []
    return [TracingInterceptor(_process_provider.get_tracer(INSTRUMENTATION_SCOPE))]


def instrument_api(app: FastAPI) -> None:
    """Make each request to ``app`` a server span named by its route template, when this
    process traces. The span's context is current while the route runs, so the Temporal calls
    it makes (the job's update-with-start, queries, updates) carry it into the workflows. A
    caller's own trace context is ignored (``WithoutCallerTraceContext``)."""
    if _process_provider is None:
        return
    # Imported here so that workers, which trace but serve no HTTP, never load FastAPI.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_process_provider,
        # Request metrics come from jobsheet/api/request_metrics.py, in Prometheus.
        meter_provider=NoOpMeterProvider(),
        excluded_urls=UNTRACED_API_PATHS,
        exclude_spans=["receive", "send"],
    )
    traced_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return WithoutCallerTraceContext(traced_stack())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


class WithoutCallerTraceContext:
    """Drops the caller's ``traceparent``, ``tracestate`` and ``baggage`` headers before the
    request's span starts, so every request to the public API starts a trace of jobsheet's own:
    a caller neither picks a job's trace id nor puts baggage into the Temporal headers (which
    are not encrypted) of every command its job makes."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = [(k, v) for k, v in scope["headers"] if k not in _TRACE_CONTEXT_HEADERS]
            scope = {**scope, "headers": headers}
        await self._app(scope, receive, send)


class RedactingSpanProcessor(SpanProcessor):
    """Hands ``next`` each ended span with its secrets redacted (``redact_secrets``) from its
    name, attributes, events, links and status: instrumentations record the request's URL and
    exception messages, which can quote a PAR."""

    def __init__(self, next: SpanProcessor) -> None:
        self._next = next

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self._next.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:
        self._next._on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        self._next.on_end(redacted_span(span))

    def shutdown(self) -> None:
        self._next.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._next.force_flush(timeout_millis)


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself, or a copy of it with its secrets redacted when it holds any."""
    if not any(_holds_secret(text) for text in _texts(span)):
        return span
    description = span.status.description
    return ReadableSpan(
        name=redact_secrets(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redacted_attributes(span.attributes),
        events=[
            Event(event.name, _redacted_attributes(event.attributes), event.timestamp)
            for event in span.events
        ],
        links=[Link(link.context, _redacted_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(span.status.status_code, description and redact_secrets(description)),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _holds_secret(text: str) -> bool:
    return redact_secrets(text) != text


def _texts(span: ReadableSpan) -> Iterator[str]:
    """Every string a span carries (its resource aside, which the process sets)."""
    yield span.name
    if span.status.description:
        yield span.status.description
    for attributes in (
        span.attributes,
        *(event.attributes for event in span.events),
        *(link.attributes for link in span.links),
    ):
        for value in (attributes or {}).values():
            if isinstance(value, str):
                yield value
            elif isinstance(value, Sequence):
                yield from (item for item in value if isinstance(item, str))


def _redacted_attributes(attributes: Attributes) -> dict[str, AttributeValue] | None:
    if attributes is None:
        return None
    return {key: _redacted_value(value) for key, value in attributes.items()}


def _redacted_value(value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, Sequence) and any(isinstance(item, str) for item in value):
        return [redact_secrets(item) if isinstance(item, str) else item for item in value]
    return value
