"""The FastAPI app: settings, error handlers, routers and the launch loop, wired together."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from automat_pipeline.api import errors
from automat_pipeline.api.audit import RequestId
from automat_pipeline.api.dagster_client import DagsterClient
from automat_pipeline.api.guards import BodyLimit
from automat_pipeline.api.launcher import LaunchLoop
from automat_pipeline.api.routes import (
    activity,
    admin,
    analytics,
    audit,
    auth,
    catalog,
    health,
    materials,
    media,
    metrics,
    notifications,
    operator,
    orders,
    portal,
    render_hosts,
    templates,
    uploads,
    webhooks,
    workflows,
)
from automat_pipeline.settings import Settings

COMMON_RESPONSES = {
    400: {"description": "A global admin did not name the tenant (X-Tenant-Id)."},
    401: {"description": "Missing, expired or invalid access token."},
    403: {"description": "Your role may not do this."},
    404: {"description": "No such resource in your tenant."},
    422: {"description": "The request does not validate."},
}
ROUTERS = (
    auth,
    operator,
    admin,
    catalog,
    materials,
    orders,
    media,
    uploads,
    workflows,
    health,
    analytics,
    portal,
    metrics,
    render_hosts,
    templates,
    notifications,
    activity,
    webhooks,
    audit,
)


def create_app(settings: Settings | None = None, launcher: bool = True) -> FastAPI:
    """The API over ``settings`` (default: the environment's); ``launcher``: run the launch loop."""
    settings = settings or Settings()
    dagster = DagsterClient(settings.dagster_graphql_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = LaunchLoop(settings.api_database_url, dagster)
        if launcher:
            loop.start()
        yield
        loop.stop()

    app = FastAPI(
        title="Automat orders API",
        default_response_class=errors.SafeJSONResponse,
        version="1",
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
        description=(
            "Clients order renders of their products; project managers and admins steer. Log in at "
            "POST /auth/login and send the access token as `Authorization: Bearer …`. Every id of another "
            "tenant answers 404. The client portal, a browser view over this API, is at /portal/."
        ),
    )
    app.state.settings = settings
    app.state.dagster = dagster
    errors.install(app)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(RequestId)
    for module in ROUTERS:
        app.include_router(module.router)
    app.mount("/portal", portal.files())  # the portal's scripts and styles; its page is a route
    return app
