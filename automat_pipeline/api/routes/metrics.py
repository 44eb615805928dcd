"""``GET /metrics``: what an autoscaler of render hosts and an operator watch, in Prometheus' text format.

From Dagster (its GraphQL API, as the rest of the API reads it): runs in flight by state per
tenant (queued, not started, starting, started, canceling), the render runs queued per tenant, and
finished runs by state per tenant. From the domain database (``observations``, counted where the
work is done): conversion seconds and render seconds per step and tenant, and upload sensor tick
seconds. ``automat_dagster_up`` is 0 while the webserver does not answer; the histograms are
served regardless.

Who may read it: with ``AUTOMAT_METRICS_TOKEN`` set, a caller sending it as a bearer token; without
it, only callers on the loopback interface (a Prometheus or an agent beside the API).
"""

from __future__ import annotations

import hmac
import ipaddress
from itertools import accumulate

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import text

from automat_pipeline import tags
from automat_pipeline.api.dagster_client import DagsterClient, DagsterUnavailable
from automat_pipeline.api.deps import scoped_session, settings
from automat_pipeline.db import repository

router = APIRouter(tags=["metrics"])

HISTOGRAMS = {  # observations.metric → the histogram's name and help
    "conversion": ("automat_conversion_seconds", "STEP → metadata and GLBs, per conversion (isolated child included)."),
    "render": ("automat_render_seconds", "Seconds Blender rendered, per completed render, by step."),
    "sensor_tick": ("automat_sensor_tick_seconds", "Upload sensor ticks, scan to run requests."),
}


def _authorized(request: Request) -> None:
    token = settings(request).metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token.get_secret_value()}".encode()):
            raise HTTPException(401, "send AUTOMAT_METRICS_TOKEN as the bearer token", {"WWW-Authenticate": "Bearer"})
        return
    try:
        loopback = ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPException(403, "/metrics answers loopback callers only, unless AUTOMAT_METRICS_TOKEN is set")


class _Metrics(Collector):
    """One scrape's figures: Dagster's runs by state and tenant, the duration histograms."""

    def __init__(self, database_url: str, dagster: DagsterClient):
        self.database_url, self.dagster = database_url, dagster

    def collect(self):
        with scoped_session(self.database_url, None) as s:
            # every tenant's slug, through global administration's function (the role reads no tenants)
            tenants = sorted(s.scalars(text("SELECT slug FROM automat_tenants()")))
            histograms = repository.observations(s)
        yield from self._runs(tenants)
        families = {}
        for row in histograms:
            name, help_text = HISTOGRAMS.get(row.metric, (f"automat_{row.metric}_seconds", row.metric))
            family = families.setdefault(row.metric, HistogramMetricFamily(name, help_text, labels=["step", "tenant"]))
            bounds = [floatToGoString(b) for b in repository.BUCKETS] + ["+Inf"]
            family.add_metric([row.step, row.tenant], list(zip(bounds, accumulate(row.buckets), strict=True)), row.sum)
        yield from families.values()

    def _runs(self, tenants: list[str]):
        up = GaugeMetricFamily("automat_dagster_up", "1 when the Dagster webserver answered this scrape.")
        try:
            in_flight, finished = self.dagster.run_states(tenants, tags.TENANT, tags.RENDERS)
        except DagsterUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        runs = GaugeMetricFamily(
            "automat_runs", "Runs by state and tenant (in flight now, finished so far).", labels=["tenant", "state"]
        )
        for (tenant, state), count in sorted({**in_flight["runs"], **finished}.items()):
            runs.add_metric([tenant, state.lower()], count)
        yield runs
        queued = GaugeMetricFamily(
            "automat_render_runs_queued",
            "Queued runs with a Blender step, by tenant: the render hosts' backlog.",
            labels=["tenant"],
        )
        for tenant, count in sorted(in_flight["renders_queued"].items()):
            queued.add_metric([tenant], count)
        yield queued


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus text format."},
        401: {"description": "AUTOMAT_METRICS_TOKEN is set and was not sent as the bearer token."},
        403: {"description": "No AUTOMAT_METRICS_TOKEN is set and the caller is not on the loopback interface."},
    },
)
def metrics(request: Request) -> Response:
    """Runs by state per tenant, the render backlog, conversion, render and sensor tick seconds."""
    _authorized(request)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Metrics(settings(request).api_database_url, request.app.state.dagster))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
