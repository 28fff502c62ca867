"""The public API's app factory: the signed ``/v1`` routes, the PAR routes and the docs.

One stateless service: several replicas behind a load balancer answer alike, since everything
they know lives in Temporal and S3. ``/openapi.json`` describes it and ``/docs`` lets a person
try it; every ``/v1`` route but sign-up and the calculations list needs a signed request.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from jobsheet import __version__
from jobsheet.api import accounts, codec, jobs, run_routes, users, write_routes
from jobsheet.api.body_limit import BodyLimit
from jobsheet.api.context import build_context
from jobsheet.api.errors import COMMON_REFUSALS, install_handlers
from jobsheet.api.request_metrics import RequestMetrics
from jobsheet.api.temporal_clients import Connect
from jobsheet.contracts.api import Health
from jobsheet.core.settings import Settings
from jobsheet.core.temporal import connect
from jobsheet.telemetry.tracing import instrument_api

DESCRIPTION = """
Pay-per-job compute: submit a job with a signed cheque, upload its input and trigger its run
through the pre-authenticated URLs (PARs) it answers, watch it and download its outputs.

Every `/v1` request except sign-up and the calculations list is signed with the caller's
Ed25519 key as an HTTP Message Signature (RFC 9421): see the README, "Signing a request by hand".
"""

PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/healthz"),
        ("POST", "/v1/users"),
        ("GET", "/v1/calculations"),
    }
)
"""Routes answered without a signature; every other non-PAR route refuses an unsigned request
(a test holds the app to this list, so a route added later cannot forget its signature)."""

PAR_PREFIX = "/par/"
"""PAR routes authenticate by the token in their URL alone."""


def create_app(settings: Settings, *, connector: Connect = connect) -> FastAPI:
    """The public API for ``settings``; it holds the S3 credentials and reaches Temporal, so
    users need neither."""
    app = FastAPI(
        title="jobsheet",
        version=__version__,
        description=DESCRIPTION,
        responses=COMMON_REFUSALS,
    )
    ctx = build_context(settings, connector=connector)
    app.state.context = ctx
    install_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(RequestMetrics)  # outermost: times and counts every answer, 413s too

    health = APIRouter(tags=["service"])

    @health.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The API process answers (it does not wait for Temporal)."""
        return Health(ok=True)

    app.include_router(health)
    app.include_router(users.public)
    app.include_router(jobs.public)
    app.include_router(users.router)
    app.include_router(accounts.router)
    app.include_router(jobs.router)
    app.router.routes.extend(run_routes.routes(settings, ctx.temporal))
    app.router.routes.extend(write_routes.routes(settings))
    app.include_router(codec.router(settings))
    instrument_api(app)  # each request a server span, when this process traces
    return app
