"""Orders: drafts of product × output type lines, submitted as Dagster runs, followed to the end.

Launching is ``automat_pipeline.api.launcher``'s: at submission when Dagster answers, else by its
loop once Dagster is back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from automat_pipeline import output_types, policy, workflows
from automat_pipeline.api.dagster_client import DagsterClient, DagsterUnavailable
from automat_pipeline.api.deps import Caller, Id, Tx, Who, owned, settings
from automat_pipeline.api.files import media_path, zip_stream
from automat_pipeline.api.launcher import compiled, launch_lines
from automat_pipeline.api.order_service import FINISHED, OrderOut, OrderStatus, OrderSummary, board, document
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import MediaAsset, Order, OrderHistory, OrderLine, Product, Tenant
from automat_pipeline.notify import events
from automat_pipeline.tenant_settings import TenantSettings

router = APIRouter(tags=["orders"])
NOT_FOUND = {404: {"description": "No such order in your tenant (or not yours)."}}
CONFLICT = {409: {"description": "The order is not in a state that allows this."}}


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


class Board(BaseModel):
    items: list[OrderSummary] = Field(description="Newest first.")
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null on the last page.")
    counts: dict[str, int] = Field(description="Orders per status under the same filters (but the status one).")


def dagster(request: Request) -> DagsterClient:
    return request.app.state.dagster


def _new_order(tx: Session, who: Caller, tenant_id: int, **values) -> Order:
    now = datetime.now(UTC)
    number = repository.next_order_number(tx, tenant_id, now.year)
    order = Order(tenant_id=tenant_id, number=number, created_by=who.user_id, **values)
    tx.add(order)
    tx.flush()
    return order


def _history(tx: Session, order: Order, who: Caller, event: str, **values) -> None:
    tx.add(OrderHistory(tenant_id=order.tenant_id, order_id=order.id, event=event, by_user=who.user_id, **values))


@router.post("/orders", status_code=201)
def create_order(request: Request, who: Who, tx: Tx, body: OrderIn | None = None) -> OrderOut:
    """Start a draft order, optionally naming the workflow its lines run; it gets its number now."""
    who.require(Permission.own_orders)
    workflow = body.workflow if body else None
    if workflow:
        repository.saved_workflow(tx, who.tenant(), workflow)  # 404 if the tenant has no such workflow
    order = _new_order(tx, who, who.tenant(), status="draft", workflow=workflow)
    return document(tx, order, dagster(request))


@router.get("/orders")
def order_board(
    who: Who,
    tx: Tx,
    status: Annotated[
        list[OrderStatus] | None, Query(description="Only orders in these states (several at once).")
    ] = None,
    created_by: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this user's orders.")] = None,
    number: Annotated[str | None, Query(max_length=32, description="The order with this number.")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="From the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
) -> Board:
    """The order board: your orders, or all of the tenant's for project managers and above, newest
    first a page at a time, with the number of orders per status. Answered from PostgreSQL alone."""
    who.require(Permission.own_orders)
    if not who.can(Permission.view_all_orders):
        if created_by not in (None, who.user_id):
            raise HTTPException(403, "clients see their own orders only")
        created_by = who.user_id
    items, next_cursor, per_status = board(tx, who.tenant(), status or [], created_by, number, cursor, limit)
    return Board(items=items, next_cursor=next_cursor, counts=per_status)


@router.get("/orders/{order_id}", responses=NOT_FOUND)
def get_order(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """The render job document: every line's state, progress, failure, steps and outputs, and the
    order's history."""
    return document(tx, _order(tx, who, order_id, lock=False), dagster(request))


@router.post(
    "/orders/{order_id}/lines",
    status_code=201,
    responses={**NOT_FOUND, **CONFLICT, 422: {"description": "Unknown product or output type."}},
)
def add_line(order_id: Id, body: LineIn, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Add a product × output type line to a draft."""
    order = _draft(tx, who, order_id)
    product = select(Product.id).where(
        Product.id == body.product_id, Product.tenant_id == order.tenant_id, Product.active
    )
    if tx.scalar(product) is None:
        raise HTTPException(422, f"no active product {body.product_id} in your tenant")
    if body.output_type not in {t.name for t in repository.output_types_of(tx, order.tenant_id)}:
        raise HTTPException(422, f"no output type {body.output_type!r} in your tenant")
    line = insert(OrderLine).values(
        tenant_id=order.tenant_id, order_id=order.id, product_id=body.product_id, output_type=body.output_type
    )
    tx.execute(line.on_conflict_do_nothing(index_elements=["order_id", "product_id", "output_type"]))
    return document(tx, order, dagster(request))


@router.delete("/orders/{order_id}/lines/{line_id}", responses={**NOT_FOUND, **CONFLICT})
def remove_line(order_id: Id, line_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Remove a line from a draft."""
    order = _draft(tx, who, order_id)
    removed = tx.execute(delete(OrderLine).where(OrderLine.id == line_id, OrderLine.order_id == order.id))
    if not removed.rowcount:
        raise HTTPException(404, f"no line {line_id} in order {order_id}")
    return document(tx, order, dagster(request))


@router.post(
    "/orders/{order_id}/submit",
    responses={**NOT_FOUND, **CONFLICT, 422: {"description": "The order breaks a tenant rule."}},
)
def submit(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Check the order against the tenant's rules, then launch it: a Dagster run per line, or per
    batch of lines whose step renders many products in one run (``launcher.launch_lines``)."""
    order = _draft(tx, who, order_id)
    lines = list(tx.scalars(select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)))
    settings = TenantSettings.of(tx.get(Tenant, order.tenant_id).settings)
    types = {t.name: t for t in repository.output_types_of(tx, order.tenant_id)}
    problems = []
    if not lines:
        problems.append("the order has no lines")
    if len(lines) > settings.max_order_size:
        problems.append(f"{len(lines)} lines exceed the tenant's max_order_size of {settings.max_order_size}")
    for line in lines:
        output_type = types.get(line.output_type)
        if output_type is None:
            problems.append(f"line {line.id}: output type {line.output_type!r} no longer exists")
        elif refusal := policy.engine_refusal(settings, output_type):
            problems.append(f"line {line.id}: {refusal}")
        else:
            limits = request.app.state.settings
            problems += [f"line {line.id}: {problem}" for problem in output_types.over_limits(output_type, limits)]
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
            f"line {line.id}: workflow {order.workflow!r} has no {types[line.output_type].step} step"
            for line in lines
            if line.output_type in types and types[line.output_type].step not in steps
        ]
    if problems:
        raise HTTPException(422, "; ".join(problems))
    order.status, order.submitted_at = "submitted", datetime.now(UTC)
    for line in lines:
        line.run_id = line.batch_id = line.launch_error = line.error_class = line.reason = line.progress = None
        line.launch_attempts, line.launch_attempted_at = 0, None  # a resubmission launches afresh
        line.state, line.outputs, line.started_at, line.ended_at, line.seconds = "pending", [], None, None, None
    lines_sent = [{"line": line.id, "product_id": line.product_id, "output_type": line.output_type} for line in lines]
    _history(tx, order, who, "submitted", lines=lines_sent)
    launch_lines(tx, dagster(request), order, types)
    events.order_changed(tx, "order.submitted", order, who, "draft", lines=len(lines))
    return document(tx, order, dagster(request))


@router.post("/orders/{order_id}/cancel", responses={**NOT_FOUND, **CONFLICT})
def cancel(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Cancel a submitted order (its creator, or project managers and above): its runs are
    terminated, unlaunched lines never launch."""
    order = _order(tx, who, order_id)
    if order.status != "submitted":
        raise HTTPException(409, f"order {order_id} is {order.status}, not submitted")
    _stop(tx, dagster(request), order, "the order was cancelled")
    order.status = "cancelled"
    _history(tx, order, who, "cancelled")
    events.order_changed(tx, "order.cancelled", order, who, "submitted")
    return document(tx, order, dagster(request))


@router.post("/orders/{order_id}/lines/{line_id}/cancel", responses={**NOT_FOUND, **CONFLICT})
def cancel_line(order_id: Id, line_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Cancel one line of a submitted order; the others go on."""
    order = _order(tx, who, order_id)
    line = tx.scalar(select(OrderLine).where(OrderLine.id == line_id, OrderLine.order_id == order.id).with_for_update())
    if line is None:
        raise HTTPException(404, f"no line {line_id} in order {order_id}")
    if order.status != "submitted" or line.state in FINISHED:
        raise HTTPException(409, f"line {line_id} is {line.state} in a {order.status} order")
    _stop(tx, dagster(request), order, "the line was cancelled", [line])
    _history(tx, order, who, "line_cancelled", lines=[{"line": line.id}])
    events.lines_settled(tx, OrderLine.id == line.id)  # a line never launched is cancelled now
    return document(tx, order, dagster(request))


@router.post("/orders/{order_id}/reject", responses={**NOT_FOUND, **CONFLICT})
def reject(order_id: Id, body: Reject, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Reject an order with a reason (project managers and above); its work is cancelled."""
    who.require(Permission.reject_orders)
    order = _order(tx, who, order_id)
    if order.status in ("rejected", "cancelled"):
        raise HTTPException(409, f"order {order_id} is already {order.status}")
    _stop(tx, dagster(request), order, "the order was rejected")
    was, order.status, order.reject_reason, order.rejected_at = order.status, "rejected", body.reason, datetime.now(UTC)
    _history(tx, order, who, "rejected", reason=body.reason)
    events.order_changed(tx, "order.rejected", order, who, was, reason=body.reason)
    return document(tx, order, dagster(request))


@router.post("/orders/{order_id}/resubmit", responses={**NOT_FOUND, **CONFLICT})
def resubmit(order_id: Id, request: Request, who: Who, tx: Tx) -> OrderOut:
    """Take a rejected or cancelled order back to draft, to edit and submit again (its creator); the
    rejection moves into the history."""
    order = _own(_order(tx, who, order_id), who)
    if order.status not in ("rejected", "cancelled"):
        raise HTTPException(409, f"order {order_id} is {order.status}, not rejected or cancelled")
    was, order.status, order.reject_reason, order.rejected_at = order.status, "draft", None, None
    _history(tx, order, who, "resubmitted")
    events.order_changed(tx, "order.resubmitted", order, who, was)
    return document(tx, order, dagster(request))


@router.get(
    "/orders/{order_id}/download",
    response_class=StreamingResponse,
    responses={**NOT_FOUND, 200: {"description": "A ZIP of the order's files.", "content": {"application/zip": {}}}},
)
def download(order_id: Id, request: Request, who: Who, tx: Tx):
    """Every completed line's files in one ZIP, named by product and output type
    (``<PIM-ID key>/<output type>-<step>.<ext>``); a file a later render replaced is left out and
    named in ``MISSING.txt``."""
    order = _order(tx, who, order_id, lock=False)
    lines = tx.scalars(select(OrderLine).where(OrderLine.order_id == order.id, OrderLine.state == "completed"))
    keys = dict(tx.execute(select(Product.id, Product.key).where(Product.tenant_id == order.tenant_id)).all())
    files, missing = [], []
    for line in lines:
        for output in line.outputs:
            media = tx.get(MediaAsset, output["media_id"])
            name = f"{keys.get(line.product_id, line.product_id)}/{line.output_type}-{output['asset']}"
            if media is None or media.run_id != line.run_id or media.status != "completed":
                missing.append(f"{name}: replaced by a later render or deleted")
                continue
            path = media_path(settings(request).media_dir, media)
            files.append((f"{name}{path.suffix}", path))
    if missing:
        files.append(("MISSING.txt", "\n".join(missing) + "\n"))
    filename = f"{order.number}.zip"
    return StreamingResponse(
        zip_stream(files),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _order(tx: Session, who: Caller, order_id: int, lock: bool = True) -> Order:
    """The order if the caller may see it: their own, or any of the tenant's with view_all_orders;
    locked against concurrent changes unless ``lock`` is False (a request that only reads it)."""
    who.require(Permission.own_orders)
    query = select(Order).where(Order.id == order_id, Order.tenant_id == who.tenant())
    if not who.can(Permission.view_all_orders):
        query = query.where(Order.created_by == who.user_id)
    order = tx.scalar(query.with_for_update() if lock else query)
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    return order


def _own(order: Order, who: Caller) -> Order:
    """The order, if the caller created it: only its creator edits, submits and resubmits an order;
    project managers and above see every order of the tenant, reject and cancel them."""
    if order.created_by != who.user_id:
        raise HTTPException(403, f"order {order.id} is another user's: only its creator edits or submits it")
    return order


def _draft(tx: Session, who: Caller, order_id: int) -> Order:
    order = _own(_order(tx, who, order_id), who)
    if order.status != "draft":
        raise HTTPException(409, f"order {order_id} is {order.status}; only drafts change")
    return order


def _stop(tx: Session, client: DagsterClient, order: Order, why: str, lines: list[OrderLine] | None = None) -> None:
    """Stop the order's unfinished lines (or ``lines``): terminate their runs, and cancel their
    batches' backfills, unless other lines still need them. A line whose run is terminated is
    cancelled when the run ends (the pipeline's ``order_lines`` sensor); any other at once (never
    launched, waiting in a backfill, or sharing a batch run that goes on for other lines)."""
    unfinished = list(
        tx.scalars(select(OrderLine).where(OrderLine.order_id == order.id, OrderLine.state.not_in(FINISHED)))
    )
    lines = unfinished if lines is None else lines
    stopped = {line.id for line in lines}
    kept = [line for line in unfinished if line.id not in stopped]
    runs = {line.run_id for line in lines if line.run_id} - {line.run_id for line in kept}
    batches = {line.batch_id for line in lines if line.batch_id and line.run_id is None}
    batches -= {line.batch_id for line in kept if line.run_id is None}
    try:
        client.terminate(sorted(runs))
        for batch_id in sorted(batches):
            client.cancel_backfill(batch_id)
    except DagsterUnavailable as error:
        raise HTTPException(503, f"Dagster does not answer, so the runs cannot be stopped: {error}") from error
    for line in lines:
        if line.run_id not in runs:
            line.state, line.error_class, line.reason = "cancelled", "cancelled", why


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
    output_type = next(t for t in repository.output_types_of(tx, product.tenant_id) if t.name == body.output_type)
    policy.check_engine(TenantSettings.of(tx.get(Tenant, product.tenant_id).settings), output_type)
    order = _new_order(tx, who, product.tenant_id, status="submitted", submitted_at=datetime.now(UTC))
    line = OrderLine(tenant_id=order.tenant_id, order_id=order.id, product_id=product.id, output_type=body.output_type)
    tx.add(line)
    tx.flush()
    _history(
        tx,
        order,
        who,
        "submitted",
        lines=[{"line": line.id, "product_id": product.id, "output_type": line.output_type}],
    )
    launch_lines(tx, dagster(request), order)
    events.order_changed(tx, "order.submitted", order, who, lines=1)
    return document(tx, order, dagster(request))
