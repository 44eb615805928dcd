"""The tenant's activity feed: its events, newest first, filtered; a client sees its own orders and
uploads only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from automat_pipeline.api.deps import Tx, Who
from automat_pipeline.api.security import Permission
from automat_pipeline.notify.events import Category, EventName
from automat_pipeline.notify.models import Event

router = APIRouter(tags=["notifications"])
SUBJECT = r"^[a-z_]+:[A-Za-z0-9._|-]{1,150}$"


class EventOut(BaseModel):
    id: int = Field(description="The event's id (newest first).")
    type: str = Field(description="What happened (GET /webhooks/event-types lists every type).")
    category: Category = Field(description="orders, imports, alerts or changes.")
    subject: str | None = Field(description="What it is about: order:42, order_line:7, upload:3, workflow:name…")
    actor_id: int | None = Field(description="The user who did it; null: the pipeline.")
    owner_id: int | None = Field(description="Whose it is: the order's creator, the uploader.")
    data: dict = Field(description="The details: numbers, counts, classes and reasons, before and after.")
    at: datetime = Field(description="When it happened.")


class Feed(BaseModel):
    items: list[EventOut] = Field(description="Newest first.")
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null on the last page.")


@router.get("/activity")
def activity(
    who: Who,
    tx: Tx,
    type: Annotated[list[EventName] | None, Query(description="Only these event types (several at once).")] = None,
    category: Annotated[Category | None, Query(description="Only this category.")] = None,
    subject: Annotated[
        str | None, Query(pattern=SUBJECT, description="Only events about this, e.g. order:42 or upload:3.")
    ] = None,
    since: Annotated[datetime | None, Query(description="Only events at or after this time.")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="From the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
) -> Feed:
    """What happened in the tenant, newest first a page at a time: orders, lines, imports, uploads,
    conversions, changes and alerts. Clients see the events of their own orders and uploads."""
    who.require(Permission.own_orders)
    query = select(Event).where(Event.tenant_id == who.tenant())
    if not who.can(Permission.view_all_orders):
        query = query.where(Event.owner_id == who.user_id)
    if type:
        query = query.where(Event.type.in_(type))
    if category:
        query = query.where(Event.category == category)
    if subject:
        query = query.where(Event.subject == subject)
    if since:
        query = query.where(Event.at >= since)
    if cursor:
        query = query.where(Event.id < cursor)
    rows = list(tx.scalars(query.order_by(Event.id.desc()).limit(limit + 1)))
    more, rows = len(rows) > limit, rows[:limit]
    return Feed(
        items=[EventOut.model_validate(e, from_attributes=True) for e in rows],
        next_cursor=rows[-1].id if more else None,
    )
