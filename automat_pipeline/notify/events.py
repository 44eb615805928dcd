"""Events: one append-only row per thing that happened, written once, in the transaction of the change.

``record`` is the one writer, for the API and the pipeline alike. Every event has an idempotency
key (a sensor's is derived from what it saw: a line's run, an import, a run id), so a re-evaluated
sensor tick or a restarted daemon writes nothing twice; the row and its place in ``event_queue``
commit or roll back with the change itself (the outbox), and the deliverer fans it out later, so no
request waits for a recipient, an SMTP server or a webhook.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from automat_pipeline.api.order_service import counts, order_state
from automat_pipeline.db.models import Order, OrderLine, Product, Upload
from automat_pipeline.notify import audit
from automat_pipeline.notify.models import Event, EventQueue

Category = Literal["orders", "imports", "alerts", "changes"]
Audience = Literal["creator", "uploader", "project_managers", "tenant_admins", "global_admins"]
MAX_NAMED = 100  # failed lines named in one order summary
FINISHED = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class EventType:
    name: str
    category: Category
    description: str
    audience: tuple[Audience, ...] = ()  # who is notified (their preferences decide how); none: feed and webhooks


TYPES = {
    t.name: t
    for t in (
        EventType("upload.received", "imports", "A new file version arrived in the tenant's inbox."),
        EventType(
            "catalog.imported",
            "imports",
            "A workbook was imported: created, updated, unchanged, deactivated and rejected rows, the rejected "
            "rows' reasons and the report.",
            ("uploader",),
        ),
        EventType(
            "catalog.import_failed",
            "imports",
            "A workbook was refused as a whole, with class and reason.",
            ("uploader",),
        ),
        EventType("conversion.failed", "imports", "A STEP conversion failed, with class and reason.", ("uploader",)),
        EventType("order.submitted", "orders", "An order was submitted (its lines launch)."),
        EventType("order.rejected", "orders", "An order was rejected, with the reason.", ("creator",)),
        EventType(
            "order.resubmitted", "orders", "A rejected or cancelled order went back to draft.", ("project_managers",)
        ),
        EventType("order.cancelled", "orders", "An order was cancelled."),
        EventType(
            "order.completed",
            "orders",
            "Every line of an order is finished: counts, failures by class, the failed lines.",
            ("creator", "project_managers"),
        ),
        EventType("order_line.completed", "orders", "An order line's render (or GLB) completed."),
        EventType("order_line.failed", "orders", "An order line failed, with class and reason."),
        EventType("order_line.cancelled", "orders", "An order line was cancelled."),
        EventType("workflow.saved", "changes", "A workflow was saved (a new revision)."),
        EventType("workflow.deleted", "changes", "A workflow was deleted."),
        EventType("settings.changed", "changes", "The tenant's settings changed (before and after)."),
        EventType("output_type.changed", "changes", "An output type was created or replaced (before and after)."),
        EventType("output_type.deleted", "changes", "An output type of the tenant's own was deleted."),
        EventType("material.changed", "changes", "A material of the tenant's library changed."),
        EventType("user.created", "changes", "A user was created."),
        EventType("user.changed", "changes", "A user's role or state changed."),
        EventType("webhook.test", "changes", "A test event, sent to one webhook on request."),
        EventType("alert.gpu_fallback", "alerts", "A render on a GPU host ran on the CPU.", ("global_admins",)),
        EventType("alert.blender_missing", "alerts", "Blender cannot be started on a host.", ("global_admins",)),
        EventType("alert.run_stopped", "alerts", "Run monitoring stopped a run.", ("global_admins",)),
        EventType("alert.run_stalled", "alerts", "A run is queued or running for too long.", ("global_admins",)),
        EventType("alert.sensor_failed", "alerts", "A sensor or schedule fails its ticks.", ("global_admins",)),
        EventType("alert.code_location_failed", "alerts", "The code location does not load.", ("global_admins",)),
        EventType(
            "alert.failure_rate",
            "alerts",
            "A tenant's share of failed order lines within an hour is over the threshold.",
            ("tenant_admins", "global_admins"),
        ),
        EventType(
            "alert.disk_space", "alerts", "The media volume's free space is under the threshold.", ("global_admins",)
        ),
        EventType(
            "alert.webhook_failed",
            "alerts",
            "A webhook delivery failed for a day and was given up.",
            ("tenant_admins",),
        ),
        EventType("alert.email_failed", "alerts", "An e-mail failed for a day and was given up.", ("global_admins",)),
    )
}
EventName = Literal[tuple(TYPES)]
# what a tenant's webhook may subscribe to: every event of a tenant (the global admins' alerts have none)
WEBHOOK_TYPES = [t.name for t in TYPES.values() if t.audience != ("global_admins",) and t.name != "webhook.test"]
WebhookEventName = Literal[tuple(WEBHOOK_TYPES)]


def subject_of(thing) -> str:
    """``order:42``: what an event is about."""
    return thing if isinstance(thing, str) else f"{thing[0]}:{thing[1]}"


def record(
    session: Session,
    type: str,
    subject: str | tuple[str, object] | None,
    *,
    tenant_id: int | None,
    actor=None,
    owner_id: int | None = None,
    key: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
    **data,
) -> int | None:
    """Write one event and queue it for the deliverer, in ``session``'s transaction; its id, or None
    if an event with ``key`` exists. ``actor``: the API's caller (``user_id``, ``role``), None for the
    pipeline; ``before``/``after``: a change's summary, which the request's audit row also carries."""
    subject = subject_of(subject) if subject is not None else None
    if before is not None and after is not None:
        before, after = audit.changed(before, after)
    details = (
        data | ({"before": before} if before is not None else {}) | ({"after": after} if after is not None else {})
    )
    row = {
        "tenant_id": tenant_id,
        "key": key or f"{type}:{subject}:{uuid.uuid4().hex}",  # a request: its transaction is the boundary
        "type": type,
        "subject": subject,
        "owner_id": owner_id,
        "actor_id": getattr(actor, "user_id", None),
        "data": details,
    }
    [event_id] = write(session, [row]) or [None]
    if actor is not None:  # the request's audit row names what it changed
        audit.note(session, subject, type, before, after)
    return event_id


def write(session: Session, rows: list[dict]) -> list[int]:
    """Insert events (``record``'s rows; unknown types refused) and queue the new ones: their ids."""
    for row in rows:
        row["category"] = TYPES[row["type"]].category
    ids = []
    for start in range(0, len(rows), 5000):  # PostgreSQL's 65,535 bind parameters per statement
        chunk = rows[start : start + 5000]
        ids += session.scalars(
            insert(Event).values(chunk).on_conflict_do_nothing(index_elements=["key"]).returning(Event.id)
        ).all()
    if ids:
        session.execute(insert(EventQueue), [{"event_id": i} for i in ids])
    return ids


def order_changed(session: Session, type: str, order: Order, actor, before: str | None = None, **data) -> int | None:
    """An API change of ``order`` (submitted, rejected, resubmitted, cancelled): its event (number,
    status before and after), the events of the lines the change finished (unlaunched lines of a
    cancelled or rejected order, a launch refused), and the order's summary if it finished it."""
    event_id = record(
        session,
        type,
        ("order", order.id),
        tenant_id=order.tenant_id,
        actor=actor,
        owner_id=order.created_by,
        before={"status": before} if before else None,
        after={"status": order.status},
        number=order.number,
        **data,
    )
    lines_settled(session, OrderLine.order_id == order.id)
    return event_id


def lines_settled(session: Session, which) -> list[int]:
    """The events of the finished order lines ``which`` selects (``OrderLine.id.in_(ids)``):
    ``order_line.completed|failed|cancelled``, one per line and run (again: nothing), then the
    summaries of the orders they finished (``orders_finished``)."""
    rows = session.execute(
        select(OrderLine, Order.number, Order.created_by, Product.pim_id)
        .join(Order, Order.id == OrderLine.order_id)
        .join(Product, Product.id == OrderLine.product_id)
        .where(which, OrderLine.state.in_(FINISHED))
    ).all()
    events = [
        {
            "tenant_id": line.tenant_id,
            "key": f"order_line.{line.state}:{line.id}:{line.run_id}",
            "type": f"order_line.{line.state}",
            "subject": f"order_line:{line.id}",
            "owner_id": creator,
            "actor_id": None,
            "data": {
                "order_id": line.order_id,
                "number": number,
                "product_id": line.product_id,
                "pim_id": pim_id,
                "output_type": line.output_type,
                "run_id": line.run_id,
                "error_class": line.error_class,
                "reason": line.reason,
                "outputs": [o["media_id"] for o in line.outputs],
            },
        }
        for line, number, creator, pim_id in rows
    ]
    return write(session, events) + orders_finished(session, sorted({line.order_id for line, *_ in rows}))


def orders_finished(session: Session, order_ids: list[int]) -> list[int]:
    """``order.completed`` for each of these submitted (or cancelled) orders whose every line is
    finished: once per submission, with the counts, the failures by class and the failed lines."""
    if not order_ids:
        return []
    unfinished = func.count().filter(OrderLine.state.not_in(FINISHED))
    done = session.execute(
        select(Order)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Order.id.in_(order_ids), Order.status.in_(("submitted", "cancelled")))
        .group_by(Order.id)
        .having(unfinished == 0)
    ).scalars()
    return write(session, [summary_event(session, order) for order in done])


def summary_event(session: Session, order: Order) -> dict:
    """The ``order.completed`` event of ``order``: counts, failures by class, the failed lines named."""
    states = dict(
        session.execute(
            select(OrderLine.state, func.count()).where(OrderLine.order_id == order.id).group_by(OrderLine.state)
        ).all()
    )
    failed = session.execute(
        select(OrderLine.id, Product.pim_id, OrderLine.output_type, OrderLine.error_class, OrderLine.reason)
        .join(Product, Product.id == OrderLine.product_id)
        .where(OrderLine.order_id == order.id, OrderLine.state == "failed")
        .order_by(OrderLine.id)
    ).all()
    by_class: dict[str, int] = {}
    for line in failed:
        by_class[line.error_class or "unknown"] = by_class.get(line.error_class or "unknown", 0) + 1
    tally = counts(states)
    submitted = order.submitted_at.timestamp() if order.submitted_at else 0.0
    return {
        "tenant_id": order.tenant_id,
        "key": f"order.completed:{order.id}:{submitted:.6f}",  # once per submission
        "type": "order.completed",
        "subject": f"order:{order.id}",
        "owner_id": order.created_by,
        "actor_id": None,
        "data": {
            "number": order.number,
            "state": order_state(order.status, tally),
            "status": order.status,
            "total": tally.total,
            "succeeded": tally.succeeded,
            "failed": tally.failed,
            "cancelled": tally.cancelled,
            "failures": dict(sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0]))),
            "failed_lines": [
                {"line": line.id, "pim_id": line.pim_id, "output_type": line.output_type}
                | {"error_class": line.error_class, "reason": line.reason}
                for line in failed[:MAX_NAMED]
            ],
        },
    }


def uploader(
    session: Session, tenant_id: int, filename: str, sha256: str | None = None
) -> tuple[int | None, int | None]:
    """Who uploaded ``filename`` (these bytes, with ``sha256``) through the API, and the upload's id;
    ``(None, None)`` for a file put into the inbox otherwise."""
    query = select(Upload.created_by, Upload.id).where(Upload.tenant_id == tenant_id, Upload.filename == filename)
    if sha256:
        query = query.where(Upload.sha256 == sha256)
    found = session.execute(query.order_by(Upload.id.desc()).limit(1)).first()
    return (found.created_by, found.id) if found else (None, None)


def uploads_received(session: Session, tenant_id: int, uploads: list[tuple[str, str, str]]) -> list[int]:
    """``upload.received`` for new contents of files in the tenant's inbox (``uploads``: file name,
    sha256, kind), each once, named after its API upload where there is one; two statements for
    any number of files (the upload sensor's tick must not cost a query per file)."""
    if not uploads:
        return []
    found = session.execute(
        select(Upload.filename, Upload.sha256, Upload.created_by, Upload.id)
        .where(Upload.tenant_id == tenant_id, Upload.filename == func.any(sorted({name for name, _, _ in uploads})))
        .order_by(Upload.id)
    ).all()
    by_content = {(u.filename, u.sha256): u for u in found}  # the newest upload of these bytes wins
    rows = []
    for name, sha256, kind in uploads:
        upload = by_content.get((name, sha256))
        rows.append(
            {
                "tenant_id": tenant_id,
                "key": f"upload.received:{tenant_id}:{name}@{sha256[:16]}",
                "type": "upload.received",
                "subject": subject_of(("upload", upload.id)) if upload else f"inbox:{name[:150]}",
                "owner_id": upload.created_by if upload else None,
                "actor_id": None,
                "data": {"filename": name, "kind": kind, "upload_id": upload.id if upload else None},
            }
        )
    return write(session, rows)
