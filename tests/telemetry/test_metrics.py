"""Each process's ``/metrics``: the Temporal SDK's metrics and jobsheet's own, moved by real jobs.

The product runs as it is deployed: ``worker.py --role all`` and ``python -m jobsheet.api`` as
processes of their own, each with ``JOBSHEET_METRICS_PORT``, on the session's Temporal dev server
and S3 server, with task queues, operator and provider of this module's own. One journey goes
through them: a job that runs and settles (its run PAR called with a wrong token first), a job
its owner cancels, a smoke workflow whose activity fails (no such bucket). The tests compare
what both endpoints export before and after it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.smoke import SmokeObjectResult
from jobsheet.core import processes
from jobsheet.core.settings import Settings
from jobsheet.identity.authorisation import sign_authorisation
from jobsheet.jobs.messages import cancel_resource
from jobsheet.jobs.models import JobSheet, JobState
from jobsheet.jobs.operations import cancel_job
from jobsheet.ledger.models import EntryKind, LedgerEntry
from jobsheet.ops.services import PROJECT_ROOT, api_answers, settings_env
from jobsheet.telemetry import job_metrics
from tests.jobs.conftest import Deployment, deployment
from tests.servers import S3Server, own_queues, server_settings
from workflows.smoke import SmokeInput, SmokeWorkflow

DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "jobsheet.json"
READY_SECONDS = 60.0
RUN_ROUTE = "/par/run/{uid}/{token}"
WRITE_ROUTE = "/par/write/{token}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- scraping ---------------------------------------------------------------------------------


@dataclass
class Scrape:
    """One ``/metrics`` answer: its text, its samples and each family's type."""

    text: str
    samples: Samples
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Scrape:
    """The text format as Prometheus reads it: sample names as written (prometheus_client's
    own parser renames a counter's samples to ``*_total``, which the SDK's are not)."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            key = (name, frozenset(LABEL.findall(labels or "")))
            assert key not in samples, f"a sample exported twice: {line!r}"
            samples[key] = float(value)
    return Scrape(text, samples, types)


async def scrape(url: str) -> Scrape:
    async with httpx.AsyncClient() as http:
        response = await http.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


# --- the product's processes ------------------------------------------------------------------


@dataclass
class Product:
    """The worker and API processes, their metrics URLs and the settings they share."""

    settings: Settings
    worker_metrics: str
    api_metrics: str
    records: list[processes.PidRecord]

    async def scrapes(self) -> tuple[Scrape, Scrape]:
        return await scrape(self.worker_metrics), await scrape(self.api_metrics)


def _start(
    argv: list[str], name: str, settings: Settings, metrics_port: int
) -> processes.PidRecord:
    env = {**settings_env(settings), "JOBSHEET_METRICS_PORT": str(metrics_port)}
    record, _ = processes.start_process(
        argv,
        pid_file=settings.state_dir / f"{name}.pid",
        log_file=settings.state_dir / f"{name}.log",
        env=env,
        cwd=settings.state_dir,
        die_with_parent=True,
    )
    return record


def _wait(
    name: str, settings: Settings, record: processes.PidRecord, ready: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not ready():
        if not processes.is_alive(record) or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start: {processes.tail(settings.state_dir / name)}")
        time.sleep(0.2)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def module_settings(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_env: WorkflowEnvironment,
    s3_server: S3Server,
    payload_keys: str,
) -> Settings:
    """As tests/conftest.py's ``queued_settings``, for the whole module, with an API port."""
    api_port = processes.free_port()
    state_dir = tmp_path_factory.mktemp("metrics") / "state"
    state_dir.mkdir(parents=True)
    return server_settings(
        state_dir,
        temporal_env,
        s3_server,
        payload_keys,
        api_port=api_port,
        api_url=f"http://127.0.0.1:{api_port}",
        **own_queues(),
    )


@pytest.fixture(scope="module")
def product(module_settings: Settings) -> Iterator[Product]:
    settings = module_settings
    worker_port, api_port = processes.free_port(), processes.free_port()
    records: list[processes.PidRecord] = []
    try:
        worker = _start(
            [sys.executable, str(PROJECT_ROOT / "worker.py"), "--role", "all"],
            "worker",
            settings,
            worker_port,
        )
        records.append(worker)
        api = _start([sys.executable, "-m", "jobsheet.api"], "api", settings, api_port)
        records.append(api)
        log = settings.state_dir / "worker.log"
        _wait("worker.log", settings, worker, lambda: b"worker ready:" in log.read_bytes())
        _wait("api.log", settings, api, lambda: api_answers(settings.api_port))
        _wait("worker.log", settings, worker, functools.partial(_healthy, worker_port))
        _wait("api.log", settings, api, functools.partial(_healthy, api_port))
        yield Product(
            settings,
            f"http://127.0.0.1:{worker_port}/metrics",
            f"http://127.0.0.1:{api_port}/metrics",
            records,
        )
    finally:
        for record in reversed(records):
            processes.stop_process(record, timeout=40)


# --- the journey ------------------------------------------------------------------------------


@dataclass
class Journey:
    """What the journey did, and both endpoints' scrapes before and after it."""

    env: Deployment
    settled: JobSheet
    cancelled: JobSheet
    run_token: str
    worker_before: Scrape
    api_before: Scrape
    worker_after: Scrape
    api_after: Scrape

    def worker_delta(self, name: str, **labels: str) -> float:
        return self.worker_after.value(name, **labels) - self.worker_before.value(name, **labels)

    def api_delta(self, name: str, **labels: str) -> float:
        return self.api_after.value(name, **labels) - self.api_before.value(name, **labels)


def cents(amount: Decimal) -> float:
    return float(amount * 100)


async def _fail_an_activity(env: Deployment, product: Product) -> None:
    """A smoke workflow on a bucket that does not exist: its activity fails (and retries) until
    the worker's endpoint shows the failure; then it is terminated."""
    handle: WorkflowHandle[SmokeWorkflow, SmokeObjectResult] = await env.client.start_workflow(
        SmokeWorkflow.run,
        SmokeInput(bucket=f"missing-{uuid.uuid4().hex[:12]}", message="fails"),
        id=f"smoke-fails-{uuid.uuid4().hex}",
        task_queue=product.settings.task_queue_jobs,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failed = (await scrape(product.worker_metrics)).value(
                "temporal_activity_execution_failed", activity_type="write_and_read_object"
            )
            if failed >= 1:
                return
            await asyncio.sleep(0.5)
        raise AssertionError("the smoke activity's failure never showed on the endpoint")
    finally:
        await handle.terminate("the failure was observed")


@pytest.fixture(scope="module")
async def journey(product: Product, temporal_env: WorkflowEnvironment) -> AsyncIterator[Journey]:
    async with deployment(temporal_env.client, product.settings, roles=()) as env:
        worker_before, api_before = await product.scrapes()
        data = b"metrics are moved by real jobs\n" * 50
        submitted = await env.submit(env.request(data))
        async with httpx.AsyncClient() as http:
            assert (await http.put(submitted.upload_url, content=data)).status_code == 200
            uid, token = submitted.run_url.rsplit("/", 2)[1:]
            wrong = secrets.token_urlsafe(32)
            refused = await http.post(f"{env.settings.api_url}/par/run/{uid}/{wrong}")
            assert refused.status_code == 404, refused.text
            answer = await http.post(submitted.run_url)
            assert answer.status_code == 202, answer.text
        settled = await env.wait_for(submitted.uid, JobState.SUCCEEDED, JobState.FAILED)
        assert settled.state == JobState.SUCCEEDED, settled.error

        second = await env.submit(env.request(b"never run"))
        cancelled = await cancel_job(
            env.client, second.uid, sign_authorisation(env.user, cancel_resource(second.uid))
        )
        assert cancelled.state == JobState.CANCELLED

        await _fail_an_activity(env, product)

        # The ledger's lines reach the audit trail (and the counters) in the background: scrape
        # until every hold and every return is in (or the time is up and the tests say what).
        held = cents(settled.costs.held + cancelled.costs.held)
        returned = cents(settled.costs.refunded + cancelled.costs.held)
        deadline = time.monotonic() + 30
        while True:
            worker_after, api_after = await product.scrapes()
            moved = [
                worker_after.value(name) - worker_before.value(name)
                for name in (
                    "jobsheet_money_held_cents_total",
                    "jobsheet_money_refunded_cents_total",
                )
            ]
            if moved == [held, returned] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        yield Journey(
            env,
            settled,
            cancelled,
            token,
            worker_before,
            api_before,
            worker_after,
            api_after,
        )


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_each_endpoint_serves_sdk_and_jobsheet_metrics_and_health(
    product: Product,
) -> None:
    worker, api = await product.scrapes()
    # The Temporal SDK's part, from the process's runtime: the worker's client made requests.
    # (The API connects on its first call that needs Temporal: its part follows then.)
    assert worker.value("temporal_request") > 0, worker.text
    assert worker.types["temporal_request_latency"] == "histogram"
    for process, found in (("worker-all", worker), ("api", api)):
        assert found.value("jobsheet_build_info", process=process) == 1
        # jobsheet's own: every refund reason exported from the start.
        for reason in job_metrics.REFUND_REASONS:
            assert ("jobsheet_money_refunded_cents_total", frozenset({("reason", reason)})) in (
                found.samples
            )
    # The worker polls its task queues: the SDK says so, labelled with them.
    assert worker.value("temporal_num_pollers", task_queue=product.settings.task_queue_jobs) > 0
    async with httpx.AsyncClient() as http:
        for url in (product.worker_metrics, product.api_metrics):
            base = url.removesuffix("/metrics")
            health = await http.get(f"{base}/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            assert (await http.get(f"{base}/nope")).status_code == 404


@pytest.mark.timeout(300)
async def test_money_held_charged_and_refunded_to_the_cent(journey: Journey) -> None:
    settled, cancelled = journey.settled.costs, journey.cancelled.costs
    assert settled.charged > 0 and settled.refunded > 0 and cancelled.charged == 0
    delta = journey.worker_delta
    assert delta("jobsheet_money_held_cents_total") == cents(settled.held + cancelled.held)
    assert delta("jobsheet_money_charged_cents_total") == cents(settled.charged)
    assert delta("jobsheet_money_refunded_cents_total", reason="unused") == cents(settled.refunded)
    assert delta("jobsheet_money_refunded_cents_total", reason="refund") == cents(cancelled.held)
    assert delta("jobsheet_money_refunded_cents_total", reason="auto_refund") == 0
    assert delta("jobsheet_money_refunded_cents_total", reason="void") == 0
    # The API moves no money of its own.
    assert journey.api_after.value("jobsheet_money_held_cents_total") == 0


async def test_the_run_and_its_queue_wait_are_observed(journey: Journey) -> None:
    contract = journey.settled.contract
    assert contract is not None
    labels = {"service": contract.service, "calculation": contract.calculation}
    delta = journey.worker_delta
    assert delta("jobsheet_run_duration_seconds_count", **labels, status="succeeded") == 1
    assert delta("jobsheet_run_duration_seconds_sum", **labels, status="succeeded") > 0
    assert delta("jobsheet_run_queue_wait_seconds_count", service=contract.service) == 1
    assert 0 <= delta("jobsheet_run_queue_wait_seconds_sum", service=contract.service) < 30
    assert journey.worker_after.value("jobsheet_runs_in_progress", service=contract.service) == 0


async def test_api_latency_and_par_calls_by_route_template_and_status(journey: Journey) -> None:
    delta = journey.api_delta
    # The API's Temporal client (made at its first run PAR call) reports through its endpoint:
    # the run PAR's update is a long request to the SDK.
    update = {"operation": "UpdateWorkflowExecution"}
    assert journey.api_after.value("temporal_long_request", **update) >= 1
    run = {"route": RUN_ROUTE}
    assert delta("jobsheet_par_calls_total", **run, status="202") == 1
    assert delta("jobsheet_par_calls_total", **run, status="404") == 1
    assert delta("jobsheet_api_request_duration_seconds_count", **run, method="POST") == 2
    assert delta("jobsheet_api_request_duration_seconds_sum", **run) > 0
    # The compute worker exchanged its bucket-write PAR once per output it wrote.
    outputs = len(journey.settled.outputs)
    assert outputs >= 3
    assert delta("jobsheet_par_calls_total", route=WRITE_ROUTE, status="200") == outputs
    # Routes are templates: no job uid, no token, no path in any label.
    text = journey.api_after.text
    assert journey.settled.uid not in text and journey.run_token not in text
    routes = {
        dict(labels)["route"]
        for name, labels in journey.api_after.samples
        if name.startswith("jobsheet_api_request_duration_seconds")
    }
    assert {RUN_ROUTE, WRITE_ROUTE, "/healthz"} <= routes
    assert all(route == "unmatched" or route.startswith("/") for route in routes)


async def test_jobs_by_state_from_visibility(journey: Journey, product: Product) -> None:
    # Counted at most every few seconds (job_states.MAX_AGE_SECONDS): scrape until it shows.
    deadline = time.monotonic() + 30
    while True:
        after = await scrape(product.worker_metrics)
        ended = (
            after.value("jobsheet_jobs", state="succeeded"),
            after.value("jobsheet_jobs", state="cancelled"),
        )
        if ended == (1, 1) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert after.value("jobsheet_jobs", state="succeeded") == 1
    assert after.value("jobsheet_jobs", state="cancelled") == 1
    for state in JobState:
        if state not in (JobState.SUCCEEDED, JobState.CANCELLED):
            assert after.value("jobsheet_jobs", state=state.value) == 0, state
    assert after.value("jobsheet_job_state_count_failures_total") == 0


# --- the dashboard ----------------------------------------------------------------------------

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
    "or", "unless", "le", "inf", "nan",
}  # fmt: skip
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (inside ``{}`` or after by/without), strings, durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges and subqueries
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|s|m|h|d|w|y)?\b", " ", text)  # numbers
    names = set()
    for match in NAME.finditer(text):
        following = text[match.end() :].lstrip()
        word = match.group()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        for nested in [panel, *panel.get("panels", [])]:
            exprs += [t["expr"] for t in nested.get("targets", []) if t.get("expr")]
    return exprs


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(jobsheet_api_request_duration_seconds"
        '_bucket{status=~"5..", route!="/healthz"}[$__rate_interval]))) * 1000 '
        "/ on (job) max without (instance) (temporal_request) offset 5m"
    )
    assert metric_names(expr) == {
        "jobsheet_api_request_duration_seconds_bucket",
        "temporal_request",
    }


async def test_every_metric_the_dashboard_names_is_exported(journey: Journey) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = {
        json.dumps(p.get("datasource"), sort_keys=True)
        for p in dashboard["panels"]
        if "targets" in p
    }
    assert datasources == {json.dumps({"type": "prometheus", "uid": "prometheus"}, sort_keys=True)}
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 10
    named = set().union(*(metric_names(expr) for expr in exprs))
    assert any(name.startswith("temporal_") for name in named)
    exported = journey.worker_after.names | journey.api_after.names
    types = {**journey.worker_after.types, **journey.api_after.types}
    missing = sorted(named - exported)
    assert not missing, f"the dashboard names metrics no process exports: {missing}"
    for name in named:
        for suffix in ("_bucket", "_sum", "_count"):
            family = name.removesuffix(suffix)
            if name.endswith(suffix) and family in types:
                assert types[family] == "histogram", name
    # Each equality matcher selects something: no misspelt label or value.
    samples = [*journey.worker_after.samples, *journey.api_after.samples]
    for expr in exprs:
        for name, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr):
            wanted = set(re.findall(r'([a-zA-Z_]\w*)="([^"]*)"', matchers))
            assert any(n == name and wanted <= labels for n, labels in samples), (name, wanted)
    # Rates of counters only: a rate over a gauge is a mistake on the dashboard.
    for expr in exprs:
        for name in re.findall(r"(?:rate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr):
            family = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert types.get(family, types.get(name)) in ("counter", "histogram"), name


# --- without servers --------------------------------------------------------------------------


def _entry(seq: int, kind: EntryKind, amount: str, key: str = "k") -> LedgerEntry:
    return LedgerEntry(
        account=f"acct-{uuid.uuid4().hex[:6]}" if seq == 0 else "acct-counted",
        seq=seq,
        entry_id=f"{kind.value}-{seq}",
        at=datetime(2026, 11, 28, 12, tzinfo=UTC),
        kind=kind,
        amount=Decimal(amount),
        balance_delta=Decimal(0),
        held_delta=Decimal(0),
        in_flight_delta=Decimal(0),
        reference="r",
        idempotency_key=key,
    )


def test_a_retried_audit_counts_each_line_once() -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    account = f"acct-{uuid.uuid4().hex[:8]}"
    entries = [
        e.model_copy(update={"account": account})
        for e in (
            _entry(1, EntryKind.HOLD, "5.00"),
            _entry(2, EntryKind.RECEIPT, "1.23"),
            _entry(3, EntryKind.RELEASE, "3.77"),
            _entry(4, EntryKind.REFUND, "2.00", key="void-cash-1"),
            _entry(5, EntryKind.AUTO_REFUND, "0.01"),
            _entry(6, EntryKind.DEPOSIT, "9.99"),
        )
    ]
    before = {
        "held": value("jobsheet_money_held_cents_total"),
        "charged": value("jobsheet_money_charged_cents_total"),
        **{r: value("jobsheet_money_refunded_cents_total", reason=r) for r in ("unused", "void")},
        "auto": value("jobsheet_money_refunded_cents_total", reason="auto_refund"),
    }
    job_metrics.count_ledger_entries(entries)
    job_metrics.count_ledger_entries(entries[:3])  # the activity's retry writes them again
    assert value("jobsheet_money_held_cents_total") - before["held"] == 500
    assert value("jobsheet_money_charged_cents_total") - before["charged"] == 123
    assert value("jobsheet_money_refunded_cents_total", reason="unused") - before["unused"] == 377
    assert value("jobsheet_money_refunded_cents_total", reason="void") - before["void"] == 200
    auto = value("jobsheet_money_refunded_cents_total", reason="auto_refund") - before["auto"]
    assert auto == 1


async def test_requests_no_route_matches_are_labelled_unmatched() -> None:
    from fastapi import FastAPI
    from prometheus_client import REGISTRY

    from jobsheet.api.request_metrics import RequestMetrics

    app = FastAPI()

    @app.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        return {"name": name}

    app.add_middleware(RequestMetrics)

    def count(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return REGISTRY.get_sample_value("jobsheet_api_request_duration_seconds_count", labels) or 0

    before = count("/things/{name}", "200"), count("unmatched", "404")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        assert (await http.get("/things/secret-token-value")).status_code == 200
        assert (await http.get("/elsewhere/secret-token-value")).status_code == 404
    assert count("/things/{name}", "200") - before[0] == 1
    assert count("unmatched", "404") - before[1] == 1
    assert not any(
        "secret-token-value" in str(sample.labels)
        for family in REGISTRY.collect()
        for sample in family.samples
    )


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(Path(DASHBOARD).read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for target in panel.get("targets", []):
            assert target["refId"] and target["expr"]
