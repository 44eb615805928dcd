"""A tenant's webhooks (tenant admins): URL, event types, secret; each one's delivery log; a test event.

Deliveries are signed JSON POSTs (``automat_pipeline.notify.webhooks``: the headers and the recipe to
verify them), sent by the deliverer, never by a request; a test event is queued like any other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from automat_pipeline.api.deps import Caller, Id, Tx, Who, settings
from automat_pipeline.api.security import Permission
from automat_pipeline.notify import audit, events, webhooks
from automat_pipeline.notify.models import Delivery, Event, Webhook

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
NOT_FOUND = {404: {"description": "No such webhook in your tenant."}}


class WebhookIn(BaseModel):
    url: str = Field(
        min_length=8,
        max_length=2000,
        description="Where each event is POSTed as signed JSON: an http:// or https:// URL. It must resolve to "
        "public addresses unless the deployment allows private networks (AUTOMAT_WEBHOOK_PRIVATE_NETWORKS).",
        examples=["https://erp.example.com/automat/events"],
    )
    event_types: list[events.WebhookEventName] = Field(
        min_length=1,
        max_length=len(events.WEBHOOK_TYPES),
        description="The event types sent to it (GET /webhooks/event-types says what each means).",
    )
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="The key every delivery is signed with (HMAC-SHA256 over '<Automat-Timestamp>.<raw body>', sent "
        "as 'Automat-Signature: v1=<hex>'). None: a new random secret when the webhook is created, the old one "
        "kept when it is replaced. The answer shows it once, when it is set.",
    )
    description: str = Field("", max_length=200, description="What the endpoint is, for the people managing it.")
    active: bool = Field(True, description="Inactive: nothing is sent to it; what was waiting is not sent.")


class WebhookOut(BaseModel):
    id: int = Field(description="The webhook's id.")
    url: str = Field(description="Where deliveries go.")
    event_types: list[str] = Field(description="The event types sent to it.")
    description: str = Field(description="What the endpoint is.")
    active: bool = Field(description="Whether deliveries are sent.")
    secret_hint: str = Field(description="The secret's last four characters, to tell secrets apart.")
    created_at: datetime = Field(description="When it was created.")
    secret: str | None = Field(None, description="The signing secret: only in the answer that set it.")


class EventTypeOut(BaseModel):
    type: str = Field(description="The event type, as deliveries name it (Automat-Event).")
    category: str = Field(description="orders, imports, alerts or changes.")
    description: str = Field(description="When it happens and what its data holds.")


class DeliveryOut(BaseModel):
    id: int = Field(description="The delivery's id (the Automat-Delivery header: the same on every retry).")
    event_id: int | None = Field(description="The event it carries.")
    event_type: str | None = Field(description="The event's type.")
    state: Literal["pending", "sent", "failed"] = Field(
        description="pending: waiting for its first or next attempt; sent: answered 2xx; failed: given up after a "
        "day of retries (the tenant's admins were alerted)."
    )
    attempts: int = Field(description="Attempts so far.")
    last_status: int | None = Field(description="The HTTP status of the last attempt; null: no answer.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending only).")
    created_at: datetime = Field(description="When the event was queued for this webhook.")
    sent_at: datetime | None = Field(description="When the endpoint accepted it.")
    log: list[dict] = Field(description="Every attempt: at, status, error, milliseconds.")


class DeliveryLog(BaseModel):
    items: list[DeliveryOut] = Field(description="Newest first.")
    next_cursor: int | None = Field(description="Pass as cursor for the next page; null on the last page.")


class TestQueued(BaseModel):
    event_id: int = Field(description="The test event; its delivery shows in GET /webhooks/{id}/deliveries.")


def _out(hook: Webhook, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        event_types=hook.event_types,
        description=hook.description,
        active=hook.active,
        secret_hint="…" + hook.secret[-4:],
        created_at=hook.created_at,
        secret=secret,
    )


def _hook(tx: Session, who: Caller, webhook_id: int) -> Webhook:
    who.require(Permission.settings)
    hook = tx.scalar(select(Webhook).where(Webhook.id == webhook_id, Webhook.tenant_id == who.tenant()))
    if hook is None:
        raise HTTPException(404, f"no webhook {webhook_id}")
    return hook


def _shown(hook: Webhook) -> dict:
    return {"url": hook.url, "event_types": hook.event_types, "active": hook.active, "description": hook.description}


@router.get("/event-types")
def event_types(who: Who) -> list[EventTypeOut]:
    """Every event type a webhook may subscribe to, with what it means."""
    who.require(Permission.own_orders)
    return [
        EventTypeOut(type=t.name, category=t.category, description=t.description)
        for t in events.TYPES.values()
        if t.name in events.WEBHOOK_TYPES
    ]


@router.get("")
def list_webhooks(who: Who, tx: Tx) -> list[WebhookOut]:
    """The tenant's webhooks (tenant admins and above)."""
    who.require(Permission.settings)
    return [_out(h) for h in tx.scalars(select(Webhook).where(Webhook.tenant_id == who.tenant()).order_by(Webhook.id))]


@router.post("", status_code=201, responses={422: {"description": "A URL a webhook may not reach."}})
def create_webhook(body: WebhookIn, request: Request, who: Who, tx: Tx) -> WebhookOut:
    """Add a webhook; the answer carries its secret (this once)."""
    who.require(Permission.settings)
    webhooks.check_url(body.url, settings(request).webhook_private_networks, resolve=False)
    secret = body.secret or webhooks.new_secret()
    hook = Webhook(
        tenant_id=who.tenant(),
        url=body.url,
        event_types=sorted(set(body.event_types)),
        secret=secret,
        description=body.description,
        active=body.active,
        created_by=who.user_id,
    )
    tx.add(hook)
    tx.flush()
    tx.refresh(hook)
    audit.note(tx, f"webhook:{hook.id}", "webhook.created", after=_shown(hook))
    return _out(hook, secret)


@router.get("/{webhook_id}", responses=NOT_FOUND)
def get_webhook(webhook_id: Id, who: Who, tx: Tx) -> WebhookOut:
    """One webhook."""
    return _out(_hook(tx, who, webhook_id))


@router.put("/{webhook_id}", responses={**NOT_FOUND, 422: {"description": "A URL a webhook may not reach."}})
def put_webhook(webhook_id: Id, body: WebhookIn, request: Request, who: Who, tx: Tx) -> WebhookOut:
    """Replace a webhook's URL, event types, description and state (and its secret, if given)."""
    hook = _hook(tx, who, webhook_id)
    webhooks.check_url(body.url, settings(request).webhook_private_networks, resolve=False)
    before = _shown(hook)
    hook.url, hook.event_types = body.url, sorted(set(body.event_types))
    hook.description, hook.active, hook.updated_at = body.description, body.active, func.now()
    if body.secret:
        hook.secret = body.secret
    tx.flush()
    tx.refresh(hook)
    before, after = audit.changed(before, _shown(hook) | ({"secret": "(new)"} if body.secret else {}))
    audit.note(tx, f"webhook:{hook.id}", "webhook.changed", before, after)
    return _out(hook, body.secret)


@router.delete("/{webhook_id}", status_code=204, responses=NOT_FOUND)
def delete_webhook(webhook_id: Id, who: Who, tx: Tx) -> None:
    """Delete a webhook and its delivery log."""
    hook = _hook(tx, who, webhook_id)
    audit.note(tx, f"webhook:{hook.id}", "webhook.deleted", before=_shown(hook))
    tx.delete(hook)


@router.get("/{webhook_id}/deliveries", responses=NOT_FOUND)
def deliveries(
    webhook_id: Id,
    who: Who,
    tx: Tx,
    state: Annotated[Literal["pending", "sent", "failed"] | None, Query(description="Only these.")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="From the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
) -> DeliveryLog:
    """The webhook's delivery log, newest first: each delivery's state, attempts and their outcomes."""
    hook = _hook(tx, who, webhook_id)
    query = (
        select(Delivery, Event.type)
        .outerjoin(Event, Event.id == Delivery.event_id)
        .where(Delivery.webhook_id == hook.id, Delivery.tenant_id == hook.tenant_id)
    )
    if state:
        query = query.where(Delivery.state == state)
    if cursor:
        query = query.where(Delivery.id < cursor)
    rows = tx.execute(query.order_by(Delivery.id.desc()).limit(limit + 1)).all()
    more, rows = len(rows) > limit, rows[:limit]
    return DeliveryLog(
        items=[
            DeliveryOut(
                id=d.id,
                event_id=d.event_id,
                event_type=event_type,
                state=d.state,
                attempts=d.attempts,
                last_status=d.last_status,
                last_error=d.last_error,
                next_attempt_at=d.next_attempt_at if d.state == "pending" else None,
                created_at=d.created_at,
                sent_at=d.sent_at,
                log=d.log,
            )
            for d, event_type in rows
        ],
        next_cursor=rows[-1][0].id if more else None,
    )


@router.post("/{webhook_id}/test", status_code=202, responses=NOT_FOUND)
def send_test(webhook_id: Id, who: Who, tx: Tx) -> TestQueued:
    """Queue a ``webhook.test`` event for this webhook alone (active or not yet); follow its delivery
    in the log."""
    hook = _hook(tx, who, webhook_id)
    event_id = events.record(
        tx,
        "webhook.test",
        ("webhook", hook.id),
        tenant_id=hook.tenant_id,
        actor=who,
        webhook_id=hook.id,
        message="a test event, sent on request",
    )
    return TestQueued(event_id=event_id)
