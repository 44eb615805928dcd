"""The audit trail: tenant admins read their tenant's, global admins every tenant's and the system's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select, text

from automat_pipeline.api.deps import Tx, Who
from automat_pipeline.api.security import Permission
from automat_pipeline.notify.models import AuditEntry

router = APIRouter(tags=["audit"])


class AuditOut(BaseModel):
    id: int = Field(description="The row's id (newest first).")
    tenant_id: int | None = Field(description="The tenant acted on; null: the system (tenants, global admins).")
    at: datetime = Field(description="When.")
    actor_id: int | None = Field(description="The user who did it; null: an operator's CLI command.")
    actor: str | None = Field(description="A CLI command's operator, cli:<login>.")
    role: str = Field(description="The actor's role (operator for the CLI).")
    source: str = Field(description="api or cli.")
    action: str = Field(description="The request (method and route) or the command.")
    object: str | None = Field(description="What it changed: order:42, workflow:preview, user:7…")
    summary: dict = Field(description="The changes the action recorded, each with before and after.")
    request_id: str | None = Field(description="The request's X-Request-Id.")


class AuditPage(BaseModel):
    items: list[AuditOut] = Field(description="Newest first.")
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null on the last page.")


@router.get("/audit")
def audit_trail(
    who: Who,
    tx: Tx,
    actor_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this user's actions.")] = None,
    action: Annotated[
        str | None, Query(max_length=200, description="Only this action, e.g. POST /orders/{order_id}/reject.")
    ] = None,
    object: Annotated[str | None, Query(max_length=200, description="Only about this, e.g. order:42.")] = None,
    since: Annotated[datetime | None, Query(description="Only at or after this time.")] = None,
    until: Annotated[datetime | None, Query(description="Only before this time.")] = None,
    tenant_id: Annotated[
        int | None,
        Query(ge=1, le=2**31 - 1, description="Global admins without X-Tenant-Id: only this tenant's rows."),
    ] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="From the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
) -> AuditPage:
    """Who changed what (tenant admins: their tenant; global admins: the tenant in X-Tenant-Id, or
    without it every tenant's and the system's), newest first a page at a time."""
    who.require(Permission.settings)
    if who.tenant_id is None:  # a global admin over every tenant: the database's one function for it
        rows = tx.execute(
            select(AuditEntry).from_statement(
                text("SELECT * FROM automat_audit(:b, :n, :t, :a, :x, :o, :s, :u)").columns(*AuditEntry.__table__.c)
            ),
            {
                "b": cursor,
                "n": limit + 1,
                "t": tenant_id,
                "a": actor_id,
                "x": action,
                "o": object,
                "s": since,
                "u": until,
            },
        ).scalars()
    else:
        query = select(AuditEntry).where(AuditEntry.tenant_id == who.tenant())
        for column, value in (
            (AuditEntry.actor_id, actor_id),
            (AuditEntry.action, action),
            (AuditEntry.object, object),
        ):
            if value is not None:
                query = query.where(column == value)
        if since:
            query = query.where(AuditEntry.at >= since)
        if until:
            query = query.where(AuditEntry.at < until)
        if cursor:
            query = query.where(AuditEntry.id < cursor)
        rows = tx.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1))
    entries = list(rows)
    more, entries = len(entries) > limit, entries[:limit]
    return AuditPage(
        items=[AuditOut.model_validate(e, from_attributes=True) for e in entries],
        next_cursor=entries[-1].id if more else None,
    )
