"""The FastAPI app: routers, the /health and /analytics routes, and the launcher loop."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, SQLAlchemyError

from automat_pipeline.api import admin, auth, catalog, media, orders, workflows
from automat_pipeline.api.dagster_client import DagsterClient
from automat_pipeline.api.deps import ApiSettings, Tx, Who, scoped_session
from automat_pipeline.api.security import Permission
from automat_pipeline.db.models import MediaAsset, Order, OrderLine

log = logging.getLogger(__name__)
LAUNCH_INTERVAL_SECONDS = 5.0
COMMON_RESPONSES = {
    400: {"description": "A global admin did not name the tenant (X-Tenant-Id)."},
    401: {"description": "Missing, expired or invalid access token."},
    403: {"description": "Your role may not do this."},
    404: {"description": "No such resource in your tenant."},
    422: {"description": "The request does not validate."},
}


class Health(BaseModel):
    database: bool = Field(description="The domain database answers.")
    dagster: bool = Field(
        description="The Dagster webserver answers; while it does not, submitted order lines "
        "wait as pending and are launched once it is back."
    )
    pending_lines: int | None = Field(description="Submitted order lines not launched yet.")


class Analytics(BaseModel):
    orders: dict[str, int] = Field(description="Orders per status.")
    renders: dict[str, int] = Field(description="Media assets per status.")


def pending_orders(config: ApiSettings) -> list[int]:
    with scoped_session(config.database_url, None, bypass=True) as s:
        return list(
            s.scalars(
                select(Order.id)
                .where(Order.status == "submitted")
                .where(select(OrderLine.id).where(OrderLine.order_id == Order.id, OrderLine.run_id.is_(None)).exists())
            )
        )


def launch_pending(config: ApiSettings, client: DagsterClient) -> int:
    """Launch every submitted line that is still waiting (the webserver was down at submission)."""
    if not client.healthy():
        return 0
    launched = 0
    for order_id in pending_orders(config):
        with scoped_session(config.database_url, None, bypass=True) as s:
            order = s.get(Order, order_id, with_for_update=True)
            if order.status == "submitted":
                launched += orders.launch_lines(s, client, order)
    return launched


def create_app(config: ApiSettings | None = None, launcher: bool = True) -> FastAPI:
    config = config or ApiSettings.from_env()
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(LAUNCH_INTERVAL_SECONDS):
            try:
                launch_pending(config, app.state.dagster)
            except SQLAlchemyError as error:
                log.warning("launcher: %s", error)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = threading.Thread(target=loop, name="order-launcher", daemon=True)
        if launcher:
            worker.start()
        yield
        stop.set()

    app = FastAPI(
        title="Automat orders API",
        version="1",
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
        description=(
            "Clients order renders of their products; project managers and admins steer. Log in at "
            "POST /auth/login and send the access token as `Authorization: Bearer …`. Every id of another "
            "tenant answers 404."
        ),
    )
    app.state.settings = config
    app.state.dagster = DagsterClient(config.dagster_graphql_url)

    @app.exception_handler(DataError)
    def unstorable(request: Request, error: DataError) -> JSONResponse:
        """A value PostgreSQL cannot store (a NUL character, a number out of range) is the client's error."""
        return JSONResponse(status_code=422, content={"detail": f"a value cannot be stored: {error.orig}"})

    for router in (
        auth.router,
        admin.router,
        catalog.router,
        orders.router,
        orders.renders,
        media.router,
        workflows.router,
    ):
        app.include_router(router)

    @app.get("/health", tags=["health"])
    def health(request: Request) -> Health:
        """Whether the database and Dagster answer, and how many order lines wait for Dagster."""
        try:
            with scoped_session(config.database_url, None, bypass=True) as s:
                pending = s.scalar(
                    select(func.count(OrderLine.id))
                    .join(Order, Order.id == OrderLine.order_id)
                    .where(Order.status == "submitted", OrderLine.run_id.is_(None))
                )
            database = True
        except SQLAlchemyError:
            database, pending = False, None
        return Health(database=database, dagster=app.state.dagster.healthy(), pending_lines=pending)

    @app.get("/analytics", tags=["analytics"])
    def analytics(who: Who, tx: Tx) -> Analytics:
        """Orders and renders per status (project managers and above)."""
        who.require(Permission.view_analytics)
        counts = {}
        for name, model in (("orders", Order), ("renders", MediaAsset)):
            rows = tx.execute(
                select(model.status, func.count()).where(model.tenant_id == who.tenant()).group_by(model.status)
            )
            counts[name] = {status: n for status, n in rows}
        return Analytics(**counts)

    return app
