"""Orders: drafts of product × output type lines, submitted as Dagster runs, followed to the end.

Launching is ``automat_pipeline.api.launcher``'s: at submission when Dagster answers, else by its
loop once Dagster is back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import Integer, delete, select
from sqlalchemy.orm import Session

from automat_pipeline import workflows
from automat_pipeline.api.dagster_client import DagsterClient, DagsterUnavailable
from automat_pipeline.api.deps import Caller, Id, Tx, Who, owned
from automat_pipeline.api.launcher import compiled, launch_lines
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import MediaAsset, Order, OrderLine, Product, Tenant
from automat_pipeline.tenant_settings import TenantSettings

router = APIRouter(tags=["orders"])
NOT_FOUND = {404: {"description": "No such order in your tenant (or not yours)."}}
CONFLICT = {409: {"description": "The order is not in a state that allows this."}}
RUN_STATES = {
    "QUEUED": "queued",
    "NOT_STARTED": "queued",
    "STARTING": "queued",
    "MANAGED": "queued",
    "STARTED": "running",
    "SUCCESS": "completed",
    "FAILURE": "failed",
    "CANCELING": "cancelled",
    "CANCELED": "cancelled",
}
LineState = Literal["pending", "queued", "running", "completed", "failed", "cancelled", "unknown"]


class LineIn(BaseModel):
    product_id: int = Field(ge=1, le=2**31 - 1, description="A product of your tenant.", examples=[1])
    output_type: str = Field(
        min_length=1, max_length=64, description="An output type of your tenant.", examples=["still-web"]
    )


class OrderIn(BaseModel):
    workflow: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A workflow of your tenant to run "
        "for each line (GET /workflows); none: each line renders its output type alone.",
        examples=["default"],
    )


class Reject(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="Why the order is rejected; the client sees it.")


class Step(BaseModel):
    step: str = Field(description="The pipeline step (asset).")
    status: str = Field(description="Dagster's step status.")
    started: float | None = Field(description="Start, seconds since the epoch.")
    ended: float | None = Field(description="End, seconds since the epoch.")
    seconds: float | None = Field(description="Duration.")


class LineOut(BaseModel):
    id: int = Field(description="The line's id.")
    product_id: int = Field(description="The product.")
    output_type: str = Field(description="The output type.")
    run_id: str | None = Field(description="The Dagster run, once launched.")
    state: LineState = Field(
        description="pending (not launched yet), queued, running, completed, failed, "
        "cancelled; unknown while Dagster does not answer."
    )
    launch_error: str | None = Field(description="Why the last launch attempt failed.")
    steps: list[Step] = Field(description="The run's steps with their times.")
    outputs: list[dict] = Field(description="The renders it made: path, engine, device, seconds, bytes.")


class OrderOut(BaseModel):
    id: int = Field(description="The order's id.")
    status: Literal["draft", "submitted", "cancelled", "rejected"] = Field(description="The order's own state.")
    workflow: str | None = Field(description="The workflow each line runs; none: its output type's render alone.")
    state: LineState | Literal["draft"] = Field(description="Derived from its lines: the least finished one.")
    created_by: int | None = Field(description="The user who created it.")
    reject_reason: str | None = Field(description="Why it was rejected.")
    rejected_at: datetime | None = Field(description="When it was rejected.")
    submitted_at: datetime | None = Field(description="When it was last submitted.")
    lines: list[LineOut] = Field(description="Its lines: the render job document.")


def _order(tx: Session, who: Caller, order_id: int) -> Order:
    """The order if the caller may see it: their own, or any of the tenant's with view_all_orders."""
    who.require(Permission.own_orders)
    query = select(Order).where(Order.id == order_id, Order.tenant_id == who.tenant())
    if not who.can(Permission.view_all_orders):
        query = query.where(Order.created_by == who.user_id)
    order = tx.scalar(query.with_for_update())
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    return order


def _document(tx: Session, order: Order, dagster: DagsterClient) -> OrderOut:
    lines = list(
        tx.scalars(
            select(OrderLine)
            .where(OrderLine.order_id == order.id, OrderLine.tenant_id == order.tenant_id)
            .order_by(OrderLine.id)
        )
    )
    try:
        runs = dagster.runs([line.run_id for line in lines if line.run_id])
    except DagsterUnavailable:
        runs = None
    media = {
        (m.product_id, m.output_type): m
        for m in tx.scalars(
            select(MediaAsset).where(
                MediaAsset.tenant_id == order.tenant_id,
                repository.any_of(MediaAsset.product_id, [line.product_id for line in lines], Integer),
            )
        )
    }
    out = []
    for line in lines:
        run = (runs or {}).get(line.run_id)
        state = (
            "pending"
            if not line.run_id
            else "unknown"
            if runs is None or run is None
            else RUN_STATES.get(run["status"], "unknown")
        )
        steps = [
            Step(
                step=s["stepKey"],
                status=s["status"],
                started=s["startTime"],
                ended=s["endTime"],
                seconds=round(s["endTime"] - s["startTime"], 3) if s["startTime"] and s["endTime"] else None,
            )
            for s in (run or {}).get("stepStats", [])
        ]
        made = media.get((line.product_id, line.output_type))
        outputs = [{"media_id": made.id, "status": made.status, "path": made.path, **made.details}] if made else []
        out.append(
            LineOut(
                id=line.id,
                product_id=line.product_id,
                output_type=line.output_type,
                run_id=line.run_id,
                state=state,
                launch_error=line.launch_error,
                steps=steps,
                outputs=outputs,
            )
        )
    order_state = (
        "draft"
        if order.status == "draft"
        else next(
            (
                s
                for s in ("unknown", "pending", "queued", "running", "failed", "cancelled")
                if any(line.state == s for line in out)
            ),
            "completed",
        )
    )
    return OrderOut(
        id=order.id,
        status=order.status,
        workflow=order.workflow,
        state=order_state,
        created_by=order.created_by,
        reject_reason=order.reject_reason,
        rejected_at=order.rejected_at,
        submitted_at=order.submitted_at,
        lines=out,
    )


def dagster(request: Request) -> DagsterClient:
    return request.app.state.dagster


@router.post("/orders", status_code=201)
def create_order(request: Request, who: Who, tx: Tx, body: OrderIn | None = None) -> OrderOut:
    """Start a draft order, optionally naming the workflow its lines run."""
    who.require(Permission.own_orders)
    workflow = body.workflow if body else None
    if workflow:
        repository.saved_workflow(tx, who.tenant(), workflow)  # 404 if the tenant has no such workflow
    order = Order(tenant_id=who.tenant(), created_by=who.user_id, status="draft", workflow=workflow)
    tx.add(order)
    tx.flush()
    return _document(tx, order, dagster(request))


@router.get("/orders")
def list_orders(request: Request, who: Who, tx: Tx) -> list[OrderOut]:
    """Your orders; all of the tenant's for project managers and above. Newest first, at most 100."""
    who.require(Permission.own_orders)
    query = select(Order).where(Order.tenant_id == who.tenant())
    if not who.can(Permission.view_all_orders):
        query = query.where(Order.created_by == who.user_id)
    return [_document(tx, o, dagster(request)) for o in tx.scalars(query.order_by(Order.id.desc()).limit(100))]


@router.get("/orders/{order_id}", responses=NOT_FOUND)
def get_order(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """The order with every line's state, steps and outputs."""
    return _document(tx, _order(tx, who, order_id), dagster(request))


@router.post(
    "/orders/{order_id}/lines",
    status_code=201,
    responses={**NOT_FOUND, **CONFLICT, 422: {"description": "Unknown product or output type."}},
)
def add_line(order_id: Id, body: LineIn, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Add a product × output type line to a draft."""
    order = _draft(tx, who, order_id)
    if (
        tx.scalar(
            select(Product.id).where(
                Product.id == body.product_id, Product.tenant_id == order.tenant_id, Product.active
            )
        )
        is None
    ):
        raise HTTPException(422, f"no active product {body.product_id} in your tenant")
    if body.output_type not in {t.name for t in repository.output_types_of(tx, order.tenant_id)}:
        raise HTTPException(422, f"no output type {body.output_type!r} in your tenant")
    if (
        tx.scalar(
            select(OrderLine.id).where(
                OrderLine.order_id == order.id,
                OrderLine.product_id == body.product_id,
                OrderLine.output_type == body.output_type,
            )
        )
        is None
    ):
        tx.add(
            OrderLine(
                tenant_id=order.tenant_id, order_id=order.id, product_id=body.product_id, output_type=body.output_type
            )
        )
        tx.flush()
    return _document(tx, order, dagster(request))


@router.delete("/orders/{order_id}/lines/{line_id}", responses={**NOT_FOUND, **CONFLICT})
def remove_line(order_id: Id, line_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Remove a line from a draft."""
    order = _draft(tx, who, order_id)
    removed = tx.execute(delete(OrderLine).where(OrderLine.id == line_id, OrderLine.order_id == order.id))
    if not removed.rowcount:
        raise HTTPException(404, f"no line {line_id} in order {order_id}")
    return _document(tx, order, dagster(request))


@router.post(
    "/orders/{order_id}/submit",
    responses={**NOT_FOUND, **CONFLICT, 422: {"description": "The order breaks a tenant rule."}},
)
def submit(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Check the order against the tenant's rules, then launch one Dagster run per line."""
    order = _draft(tx, who, order_id)
    lines = list(tx.scalars(select(OrderLine).where(OrderLine.order_id == order.id)))
    settings = TenantSettings(**tx.get(Tenant, order.tenant_id).settings)
    types = {t.name: t for t in repository.output_types_of(tx, order.tenant_id)}
    problems = []
    if not lines:
        problems.append("the order has no lines")
    if len(lines) > settings.max_order_size:
        problems.append(f"{len(lines)} lines exceed the tenant's max_order_size of {settings.max_order_size}")
    for line in lines:
        kind = types.get(line.output_type)
        if kind is None:
            problems.append(f"line {line.id}: output type {line.output_type!r} no longer exists")
        elif kind.engine not in settings.render_engines_allowed:
            problems.append(f"line {line.id}: engine {kind.engine} is not allowed for this tenant")
    with_cad = repository.has_cad(tx, order.tenant_id, [line.product_id for line in lines])
    problems += [
        f"line {line.id}: product {line.product_id} has no converted CAD file"
        for line in lines
        if line.product_id not in with_cad
    ]
    if order.workflow:
        try:
            steps = set(compiled(tx, order)[1].selection)
        except workflows.WorkflowError as error:
            raise HTTPException(422, f"workflow {order.workflow!r}: {'; '.join(error.errors)}") from error
        problems += [
            f"line {line.id}: workflow {order.workflow!r} has no {types[line.output_type].kind} step"
            for line in lines
            if line.output_type in types and types[line.output_type].kind not in steps
        ]
    if problems:
        raise HTTPException(422, "; ".join(problems))
    order.status, order.submitted_at = "submitted", datetime.now(UTC)
    for line in lines:
        line.run_id = line.launch_error = None
    launch_lines(tx, dagster(request), order, types)
    return _document(tx, order, dagster(request))


@router.post("/orders/{order_id}/cancel", responses={**NOT_FOUND, **CONFLICT})
def cancel(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Cancel a submitted order: its runs are terminated, unlaunched lines never launch."""
    order = _order(tx, who, order_id)
    if order.status != "submitted":
        raise HTTPException(409, f"order {order_id} is {order.status}, not submitted")
    _stop(tx, dagster(request), order)
    order.status = "cancelled"
    return _document(tx, order, dagster(request))


@router.post("/orders/{order_id}/reject", responses={**NOT_FOUND, **CONFLICT})
def reject(order_id: Id, body: Reject, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Reject an order with a reason (project managers and above); pending work is cancelled."""
    who.require(Permission.reject_orders)
    order = _order(tx, who, order_id)
    if order.status in ("rejected", "cancelled"):
        raise HTTPException(409, f"order {order_id} is already {order.status}")
    _stop(tx, dagster(request), order)
    order.status, order.reject_reason, order.rejected_at = "rejected", body.reason, datetime.now(UTC)
    return _document(tx, order, dagster(request))


@router.post("/orders/{order_id}/resubmit", responses={**NOT_FOUND, **CONFLICT})
def resubmit(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Take a rejected or cancelled order back to draft, to edit and submit again."""
    order = _order(tx, who, order_id)
    if order.status not in ("rejected", "cancelled"):
        raise HTTPException(409, f"order {order_id} is {order.status}, not rejected or cancelled")
    order.status = "draft"
    return _document(tx, order, dagster(request))


def _draft(tx: Session, who: Caller, order_id: int) -> Order:
    order = _order(tx, who, order_id)
    if order.status != "draft":
        raise HTTPException(409, f"order {order_id} is {order.status}; only drafts change")
    return order


def _stop(tx: Session, client: DagsterClient, order: Order) -> None:
    run_ids = list(
        tx.scalars(select(OrderLine.run_id).where(OrderLine.order_id == order.id, OrderLine.run_id.is_not(None)))
    )
    try:
        client.terminate(run_ids)
    except DagsterUnavailable as error:
        raise HTTPException(503, f"Dagster does not answer, so the runs cannot be stopped: {error}") from error


class RenderIn(BaseModel):
    output_type: str = Field(
        min_length=1, max_length=64, description="An output type of your tenant.", examples=["still-web"]
    )


@router.post(
    "/products/{product_id}/renders",
    status_code=202,
    responses={422: {"description": "No CAD, or no such output type."}},
)
def trigger_render(product_id: Id, body: RenderIn, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Render one output type of one product now (project managers and above): a one-line order,
    submitted at once, so it is followed, cancelled and kept like any other (pending while Dagster
    does not answer)."""
    who.require(Permission.trigger_renders)
    product = owned(tx, Product, product_id, who, "product")
    if body.output_type not in {t.name for t in repository.output_types_of(tx, product.tenant_id)}:
        raise HTTPException(422, f"no output type {body.output_type!r} in your tenant")
    if not repository.has_cad(tx, product.tenant_id, [product.id]):
        raise HTTPException(422, f"product {product_id} has no converted CAD file")
    order = Order(
        tenant_id=product.tenant_id, created_by=who.user_id, status="submitted", submitted_at=datetime.now(UTC)
    )
    tx.add(order)
    tx.flush()
    tx.add(OrderLine(tenant_id=order.tenant_id, order_id=order.id, product_id=product.id, output_type=body.output_type))
    tx.flush()
    launch_lines(tx, dagster(request), order)
    return _document(tx, order, dagster(request))
