"""What an order is: its job document, its place on the board, and the states it goes through.

A line's state and outcome live in ``order_lines`` (the API sets pending, queued and cancelled;
the pipeline's ``order_lines`` sensor running, completed, failed and cancelled, with the class and
reason of a failure, the outputs and the times), so documents and the board need no Dagster. Where
Dagster answers, the document adds each unfinished run's steps and a state fresher than the
sensor's last look, in one batched query.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from automat_pipeline.api.dagster_client import DagsterClient, DagsterUnavailable
from automat_pipeline.db.models import MediaAsset, Order, OrderHistory, OrderLine

LineState = Literal["pending", "queued", "running", "completed", "failed", "cancelled"]
OrderState = Literal[
    "draft", "pending", "queued", "running", "completed", "completed_with_failures", "failed", "cancelled", "rejected"
]
OrderStatus = Literal["draft", "submitted", "cancelled", "rejected"]
FINISHED = frozenset({"completed", "failed", "cancelled"})
LINE_COLUMNS = (
    "id",
    "product_id",
    "output_type",
    "run_id",
    "state",
    "progress",
    "error_class",
    "reason",
    "launch_error",
    "started_at",
    "ended_at",
    "seconds",
    "outputs",
)
# what summary() reads of an order: the board selects these columns alone
SUMMARY_COLUMNS = ("id", "number", "status", "workflow", "created_by", "created_at", "submitted_at")
RUN_STATES = {  # Dagster's run status → a line's state
    "QUEUED": "queued",
    "NOT_STARTED": "queued",
    "STARTING": "queued",
    "MANAGED": "queued",
    "STARTED": "running",
    "SUCCESS": "completed",
    "FAILURE": "failed",
    "CANCELING": "running",
    "CANCELED": "cancelled",
}


class Step(BaseModel):
    step: str = Field(description="The pipeline step (asset).")
    status: str = Field(description="Dagster's step status.")
    started: float | None = Field(description="Start, seconds since the epoch.")
    ended: float | None = Field(description="End, seconds since the epoch.")
    seconds: float | None = Field(description="Duration.")


class Output(BaseModel):
    media_id: int = Field(description="The media asset (GET /media/{id}/file while it is this line's).")
    asset: str = Field(description="The step that made it.")
    output_type: str = Field(description="The output type it followed.")
    file: str | None = Field(description="Where to download it; null once a later render replaced the file.")
    details: dict = Field(description="What the step reported: engine, device, seconds, bytes, triangles…")


class LineOut(BaseModel):
    id: int = Field(description="The line's id.")
    product_id: int = Field(description="The product.")
    output_type: str = Field(description="The output type.")
    run_id: str | None = Field(description="The Dagster run, once launched.")
    state: LineState = Field(description="pending (not launched yet), queued, running, completed, failed, cancelled.")
    progress: int | None = Field(
        description="Percent done while a render runs (samples of a still, frames of a turntable)."
    )
    error_class: str | None = Field(
        description="Why it failed or was cancelled, as a class (e.g. timeout, launch_refused)."
    )
    reason: str | None = Field(description="Why it failed or was cancelled, in one line.")
    launch_error: str | None = Field(
        description="Why the last launch attempt did not reach Dagster (it will be retried)."
    )
    started_at: datetime | None = Field(description="When its run started.")
    ended_at: datetime | None = Field(description="When its run ended.")
    seconds: float | None = Field(description="How long its run took.")
    steps: list[Step] = Field(
        description="An unfinished run's steps with their times, while Dagster answers (a finished one's are in "
        "the Dagster UI; started_at, ended_at and seconds stay here)."
    )
    outputs: list[Output] = Field(description="What its run made.")


class Counts(BaseModel):
    total: int = Field(description="Lines.")
    pending: int = Field(description="Not launched yet.")
    queued: int = Field(description="Launched, waiting for a worker.")
    running: int = Field(description="Running.")
    succeeded: int = Field(description="Completed.")
    failed: int = Field(description="Failed.")
    cancelled: int = Field(description="Cancelled (or never launched, the order being cancelled or rejected).")


class HistoryOut(BaseModel):
    event: Literal["submitted", "rejected", "resubmitted", "cancelled", "line_cancelled", "line_retried"] = Field(
        description="What happened; line_retried: a line's run lost its worker and Dagster ran it again (the "
        "reason says why, lines name the failed run and its retry)."
    )
    by_user: int | None = Field(description="Who did it.")
    at: datetime = Field(description="When.")
    reason: str | None = Field(description="A rejection's reason; a retried line's failure.")
    lines: list[dict] = Field(
        description="A submission's lines (id, product, output type); a cancelled line; a retried line."
    )


class OrderSummary(BaseModel):
    id: int = Field(description="The order's id.")
    number: str = Field(description="The order number to say on the phone: ORD-<year>-<number>, per tenant.")
    status: OrderStatus = Field(description="The order's own state.")
    state: OrderState = Field(
        description="Derived from its lines: draft; pending, queued or running while any line is; completed "
        "(all succeeded), completed_with_failures, failed (none succeeded), cancelled; rejected."
    )
    workflow: str | None = Field(description="The workflow each line runs; none: its output type's render alone.")
    created_by: int | None = Field(description="The user who created it.")
    created_at: datetime = Field(description="When it was created.")
    submitted_at: datetime | None = Field(description="When it was last submitted.")
    counts: Counts = Field(description="Its lines by state.")


class OrderOut(OrderSummary):
    reject_reason: str | None = Field(description="Why it was rejected (until it is resubmitted).")
    rejected_at: datetime | None = Field(description="When it was rejected.")
    history: list[HistoryOut] = Field(description="Submissions, rejections, resubmissions, cancellations.")
    lines: list[LineOut] = Field(description="Its lines: the render job document.")


def counts(by_state: Mapping[str, int]) -> Counts:
    """An order's lines by state, from the number of lines in each state."""
    return Counts(
        total=sum(by_state.values()),
        pending=by_state.get("pending", 0),
        queued=by_state.get("queued", 0),
        running=by_state.get("running", 0),
        succeeded=by_state.get("completed", 0),
        failed=by_state.get("failed", 0),
        cancelled=by_state.get("cancelled", 0),
    )


def order_state(status: str, tally: Counts) -> str:
    """The order's derived state: the least finished line while any is unfinished, else the outcome."""
    if status in ("draft", "rejected"):
        return status
    for state in ("running", "queued", "pending"):
        if getattr(tally, state):
            return state
    if tally.total and tally.succeeded == tally.total:
        return "completed"
    if tally.succeeded:
        return "completed_with_failures"
    return "failed" if tally.failed else "cancelled"


def summary(order, tally: Counts) -> OrderSummary:
    """``order``: an ``Order`` or a row with its columns."""
    return OrderSummary(
        id=order.id,
        number=order.number,
        status=order.status,
        state=order_state(order.status, tally),
        workflow=order.workflow,
        created_by=order.created_by,
        created_at=order.created_at,
        submitted_at=order.submitted_at,
        counts=tally,
    )


def document(tx: Session, order: Order, dagster: DagsterClient) -> OrderOut:
    """The render job document: every line's state, progress, failure, steps and outputs."""
    columns = [getattr(OrderLine, c) for c in LINE_COLUMNS]  # plain rows: a document may hold thousands
    lines = tx.execute(
        select(*columns)
        .where(OrderLine.order_id == order.id, OrderLine.tenant_id == order.tenant_id)
        .order_by(OrderLine.id)
    ).all()
    unfinished = [line.run_id for line in lines if line.run_id and line.state not in FINISHED]
    try:
        runs = dagster.runs(unfinished) if unfinished else {}
    except DagsterUnavailable:
        runs = {}
    current = _current_media(tx, order.tenant_id, [o["media_id"] for line in lines for o in line.outputs])
    out = []
    for line in lines:
        run = runs.get(line.run_id)
        state = line.state
        if run and state not in FINISHED and line.state != "pending":  # fresher than the sensor's last look;
            live = RUN_STATES.get(run["status"], state)  # an ended run stays running until its outcome is kept
            state = "running" if live in FINISHED else live
        out.append(
            LineOut(
                id=line.id,
                product_id=line.product_id,
                output_type=line.output_type,
                run_id=line.run_id,
                state=state,
                progress=line.progress if state == "running" else (100 if state == "completed" else None),
                error_class=line.error_class,
                reason=line.reason,
                launch_error=line.launch_error,
                started_at=line.started_at,
                ended_at=line.ended_at,
                seconds=line.seconds,
                steps=_steps(run),
                outputs=[
                    Output(
                        media_id=o["media_id"],
                        asset=o["asset"],
                        output_type=o["output_type"],
                        file=f"/media/{o['media_id']}/file" if current.get(o["media_id"]) == line.run_id else None,
                        details=o.get("details", {}),
                    )
                    for o in line.outputs
                ],
            )
        )
    history = tx.scalars(select(OrderHistory).where(OrderHistory.order_id == order.id).order_by(OrderHistory.id))
    return OrderOut(
        **summary(order, counts(Counter(line.state for line in out))).model_dump(),
        reject_reason=order.reject_reason,
        rejected_at=order.rejected_at,
        history=[
            HistoryOut(event=h.event, by_user=h.by_user, at=h.at, reason=h.reason, lines=h.lines) for h in history
        ],
        lines=out,
    )


def _steps(run: dict | None) -> list[Step]:
    return [
        Step(
            step=s["stepKey"],
            status=s["status"],
            started=s["startTime"],
            ended=s["endTime"],
            seconds=round(s["endTime"] - s["startTime"], 3) if s["startTime"] and s["endTime"] else None,
        )
        for s in (run or {}).get("stepStats", [])
    ]


def _current_media(tx: Session, tenant_id: int, media_ids: list[int]) -> dict[int, str | None]:
    """Media id → the run its file is from now (a later render of the same product and output type
    replaces the file)."""
    if not media_ids:
        return {}
    rows = tx.execute(
        select(MediaAsset.id, MediaAsset.run_id).where(MediaAsset.tenant_id == tenant_id, MediaAsset.id.in_(media_ids))
    )
    return dict(rows.all())


def board(
    tx: Session,
    tenant_id: int,
    statuses: list[str],
    created_by: int | None,
    number: str | None,
    cursor: int | None,
    limit: int,
) -> tuple[list[OrderSummary], int | None, dict[str, int]]:
    """A page of the tenant's orders (newest first, keyset by id), the next cursor, and the number of
    orders per status under the same filters but the status one. Two statements: the counts, and the
    page with each of its orders' lines counted by state (only the page's orders are counted)."""
    filters = [Order.tenant_id == tenant_id]
    if created_by is not None:
        filters.append(Order.created_by == created_by)
    if number:
        filters.append(Order.number == number)
    per_status = {status: 0 for status in get_args(OrderStatus)}
    per_status |= dict(tx.execute(select(Order.status, func.count()).where(*filters).group_by(Order.status)).all())
    if statuses:
        filters.append(Order.status.in_(statuses))
    if cursor is not None:
        filters.append(Order.id < cursor)
    by_state = (
        select(OrderLine.state, func.count().label("n"))
        .where(OrderLine.order_id == Order.id, OrderLine.tenant_id == tenant_id)
        .group_by(OrderLine.state)
        .correlate(Order)
        .subquery()
    )
    lines = select(func.jsonb_object_agg(by_state.c.state, by_state.c.n)).scalar_subquery()
    page = tx.execute(
        select(*(getattr(Order, c) for c in SUMMARY_COLUMNS), lines.label("lines"))
        .where(*filters)
        .order_by(Order.id.desc())
        .limit(limit + 1)
    ).all()
    more, page = len(page) > limit, page[:limit]
    items = [summary(order, counts(order.lines or {})) for order in page]
    return items, page[-1].id if more else None, per_status
