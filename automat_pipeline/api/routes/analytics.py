"""``/analytics``: the tenant's orders, renders and conversions in figures (project managers and above).

Answered from what PostgreSQL keeps: order lines (their outcome and run time, kept per line), the
media records (each render's engine time and device, each conversion's time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import text

from automat_pipeline import tags
from automat_pipeline.api.deps import Tx, Who
from automat_pipeline.api.security import Permission

router = APIRouter(tags=["analytics"])


class Seconds(BaseModel):
    p50: float | None = Field(description="The median, in seconds.")
    p95: float | None = Field(description="The 95th percentile, in seconds.")


class OutputTypeFigures(BaseModel):
    output_type: str = Field(description="The output type.")
    lines: int = Field(description="Order lines of it that finished in the period.")
    succeeded: int = Field(description="Of which completed.")
    failed: int = Field(description="Of which failed.")
    success_rate: float | None = Field(description="succeeded / (succeeded + failed).")
    run_seconds: Seconds = Field(description="How long their runs took.")


class Period(BaseModel):
    start: datetime = Field(description="The day's or week's start (UTC).")
    orders: int = Field(description="Orders submitted in it.")
    lines: int = Field(description="Order lines that finished in it.")
    succeeded: int = Field(description="Of which completed.")
    failed: int = Field(description="Of which failed.")
    success_rate: float | None = Field(description="succeeded / (succeeded + failed).")
    by_output_type: list[OutputTypeFigures] = Field(description="The same per output type.")


class Analytics(BaseModel):
    since: datetime = Field(description="The window's start.")
    until: datetime = Field(description="The window's end.")
    periods: list[Period] = Field(description="Per day or week, oldest first.")
    render_seconds: Seconds = Field(description="Blender's time per render finished in the window.")
    conversion_seconds: Seconds = Field(description="Time per STEP conversion finished in the window.")
    failure_classes: dict[str, int] = Field(description="The most frequent failure classes of order lines.")
    devices: dict[str, int] = Field(description="Renders in the window per device: gpu or cpu.")
    gpu_share: float | None = Field(description="The share of renders that ran on a GPU.")
    lines_per_hour: float = Field(description="Throughput: order lines finished per hour of the window.")


def _rate(succeeded: int, failed: int) -> float | None:
    return round(succeeded / (succeeded + failed), 4) if succeeded + failed else None


def _seconds(p50, p95) -> Seconds:
    return Seconds(p50=None if p50 is None else round(p50, 3), p95=None if p95 is None else round(p95, 3))


@router.get("/analytics")
def analytics(
    who: Who,
    tx: Tx,
    period: Annotated[Literal["day", "week"], Query(description="Group by day or by week.")] = "day",
    since: Annotated[datetime | None, Query(description="The window's start; default 30 days ago.")] = None,
    until: Annotated[datetime | None, Query(description="The window's end; default now.")] = None,
) -> Analytics:
    """Orders and order lines per day or week and per output type, success rates, render and
    conversion times (p50, p95), the top failure classes, GPU against CPU, and throughput."""
    who.require(Permission.view_analytics)
    until = (until or datetime.now(UTC)).astimezone(UTC)
    since = (since or until - timedelta(days=30)).astimezone(UTC)
    if since >= until or until - since > timedelta(days=3660):
        raise HTTPException(422, "the window must start before it ends and span at most ten years")
    window = {"t": who.tenant(), "since": since, "until": until, "period": period}
    lines = tx.execute(
        text("""
        SELECT date_trunc(:period, ended_at) AS start, output_type, count(*) AS lines,
               count(*) FILTER (WHERE state = 'completed') AS succeeded,
               count(*) FILTER (WHERE state = 'failed') AS failed,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS p95
        FROM order_lines
        WHERE tenant_id = :t AND ended_at >= :since AND ended_at < :until
          AND state IN ('completed', 'failed', 'cancelled')
        GROUP BY 1, 2 ORDER BY 1, 2"""),
        window,
    ).all()
    orders = dict(
        tx.execute(
            text("""
        SELECT date_trunc(:period, submitted_at), count(*) FROM orders
        WHERE tenant_id = :t AND submitted_at >= :since AND submitted_at < :until GROUP BY 1"""),
            window,
        ).all()
    )
    periods: dict[datetime, Period] = {}
    for row in lines:
        at = periods.setdefault(
            row.start,
            Period(
                start=row.start,
                orders=orders.get(row.start, 0),
                lines=0,
                succeeded=0,
                failed=0,
                success_rate=None,
                by_output_type=[],
            ),
        )
        at.lines, at.succeeded, at.failed = at.lines + row.lines, at.succeeded + row.succeeded, at.failed + row.failed
        at.by_output_type.append(
            OutputTypeFigures(
                output_type=row.output_type,
                lines=row.lines,
                succeeded=row.succeeded,
                failed=row.failed,
                success_rate=_rate(row.succeeded, row.failed),
                run_seconds=_seconds(row.p50, row.p95),
            )
        )
    for start, count in orders.items():
        periods.setdefault(
            start,
            Period(start=start, orders=count, lines=0, succeeded=0, failed=0, success_rate=None, by_output_type=[]),
        )
    for at in periods.values():
        at.success_rate = _rate(at.succeeded, at.failed)
    media = {"t": who.tenant(), "since": since, "until": until, "renders": sorted(tags.RENDER_STEPS)}
    render = tx.execute(
        text("""
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (details->>'render_seconds')::float),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY (details->>'render_seconds')::float),
               count(*) FILTER (WHERE details->>'backend' IS NOT NULL AND details->>'backend' <> 'CPU'),
               count(*) FILTER (WHERE details->>'backend' = 'CPU')
        FROM media_assets WHERE tenant_id = :t AND status = 'completed' AND asset = ANY(:renders)
          AND updated_at >= :since AND updated_at < :until"""),
        media,
    ).one()
    conversion = tx.execute(
        text("""
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (details->>'conversion_seconds')::float),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY (details->>'conversion_seconds')::float)
        FROM media_assets WHERE tenant_id = :t AND asset = 'glb_geometry' AND status = 'completed'
          AND updated_at >= :since AND updated_at < :until"""),
        media,
    ).one()
    failures = tx.execute(
        text("""
        SELECT error_class, count(*) FROM order_lines
        WHERE tenant_id = :t AND state = 'failed' AND ended_at >= :since AND ended_at < :until
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"""),
        window,
    ).all()
    gpu, cpu = render[2], render[3]
    finished = sum(row.lines for row in lines)
    return Analytics(
        since=since,
        until=until,
        periods=sorted(periods.values(), key=lambda p: p.start),
        render_seconds=_seconds(render[0], render[1]),
        conversion_seconds=_seconds(*conversion),
        failure_classes={error_class or "unclassified": n for error_class, n in failures},
        devices={"gpu": gpu, "cpu": cpu},
        gpu_share=round(gpu / (gpu + cpu), 4) if gpu + cpu else None,
        lines_per_hour=round(finished / ((until - since).total_seconds() / 3600), 4),
    )
