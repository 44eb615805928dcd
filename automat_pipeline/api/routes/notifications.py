"""Your notifications (a page at a time, the unread count, mark read) and your preferences.

Notifications are visible only to a transaction that names their user (``app.current_user_id``,
set here for the caller): row-level security keeps every other user's out, of this tenant or any.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from automat_pipeline.api.deps import Caller, Tx, Who
from automat_pipeline.api.security import Permission, Role
from automat_pipeline.notify import audit
from automat_pipeline.notify.models import Notification
from automat_pipeline.notify.preferences import DEFAULTS, Preferences, of_users, save

router = APIRouter(prefix="/notifications", tags=["notifications"])
Kind = Literal["orders", "imports", "alerts", "digest"]


class NotificationOut(BaseModel):
    id: int = Field(description="The notification's id (newest first).")
    category: Kind = Field(description="orders, imports, alerts, or digest (several gathered by your preferences).")
    kind: str = Field(
        description="order_summary, order_rejected, order_resubmitted, import_summary, conversion_failed, alert, "
        "digest."
    )
    title: str = Field(description="What happened, in one line (an e-mail's subject).")
    body: str = Field(description="The details: failed lines, rejected rows, a link.")
    data: dict = Field(description="The same as data: the order or upload, counts, classes.")
    created_at: datetime = Field(description="When it was made.")
    read_at: datetime | None = Field(description="When you marked it read; null: unread.")


class Inbox(BaseModel):
    items: list[NotificationOut] = Field(description="Newest first.")
    unread: int = Field(description="Your unread notifications, all of them (not only this page).")
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null on the last page.")


class Read(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=1000, description="Mark these read (ids of others are ignored)."
    )
    all: bool = Field(False, description="Mark every notification of yours read.")

    @model_validator(mode="after")
    def _ids_or_all(self) -> Read:
        if not self.ids and not self.all:
            raise ValueError("name ids, or all: true")
        return self


class Unread(BaseModel):
    unread: int = Field(description="Your unread notifications now.")


class PreferencesOut(BaseModel):
    preferences: Preferences = Field(description="Yours: your choices over your role's defaults.")
    defaults: Preferences = Field(description="Your role's defaults.")


def mine(tx: Session, who: Caller) -> None:
    """Let this transaction see the caller's notifications and preferences (and nobody else's)."""
    who.require(Permission.own_orders)
    tx.execute(select(func.set_config("app.current_user_id", str(who.user_id), True)))


def _unread(tx: Session, who: Caller) -> int:
    return tx.scalar(
        select(func.count()).where(
            Notification.user_id == who.user_id, Notification.shown_at.is_not(None), Notification.read_at.is_(None)
        )
    )


@router.get("")
def inbox(
    who: Who,
    tx: Tx,
    unread_only: Annotated[bool, Query(description="Only unread notifications.")] = False,
    category: Annotated[Kind | None, Query(description="Only this category.")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="From the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
) -> Inbox:
    """Your notifications, newest first a page at a time, with your unread count."""
    mine(tx, who)
    query = select(Notification).where(Notification.user_id == who.user_id, Notification.shown_at.is_not(None))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    if category:
        query = query.where(Notification.category == category)
    if cursor:
        query = query.where(Notification.id < cursor)
    rows = list(tx.scalars(query.order_by(Notification.id.desc()).limit(limit + 1)))
    more, rows = len(rows) > limit, rows[:limit]
    return Inbox(
        items=[NotificationOut.model_validate(n, from_attributes=True) for n in rows],
        unread=_unread(tx, who),
        next_cursor=rows[-1].id if more else None,
    )


@router.post("/read")
def mark_read(body: Read, who: Who, tx: Tx) -> Unread:
    """Mark some or all of your notifications read; your unread count after."""
    mine(tx, who)
    query = update(Notification).where(Notification.user_id == who.user_id, Notification.read_at.is_(None))
    if not body.all:
        query = query.where(Notification.id.in_(body.ids))
    tx.execute(query.values(read_at=func.now()))
    tx.info["unaudited"] = True  # one's own inbox: no change to anything of the tenant's
    return Unread(unread=_unread(tx, who))


def _preferences(tx: Session, who: Caller) -> PreferencesOut:
    return PreferencesOut(
        preferences=of_users(tx, {who.user_id: who.role.value})[who.user_id],
        defaults=DEFAULTS[who.role.value],
    )


@router.get("/preferences")
def get_preferences(who: Who, tx: Tx) -> PreferencesOut:
    """How you are notified, per category and channel, and your role's defaults."""
    mine(tx, who)
    return _preferences(tx, who)


@router.put("/preferences")
def put_preferences(body: Preferences, who: Who, tx: Tx) -> PreferencesOut:
    """Replace your preferences: every category and channel, each immediate, hourly, daily or never."""
    mine(tx, who)
    before = _preferences(tx, who).preferences.model_dump()
    tenant_id = None if who.role is Role.global_admin else who.tenant_id  # a global admin's are the system's
    save(tx, who.user_id, tenant_id, body)
    audit.note(tx, f"user:{who.user_id}", "preferences.changed", *audit.changed(before, body.model_dump()))
    return _preferences(tx, who)
