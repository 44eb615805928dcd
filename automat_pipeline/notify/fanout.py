"""Fan-out: each queued event to the people it concerns (by their preferences) and to the tenant's
webhooks, as notifications and deliveries; each exactly once (unique keys), whoever runs it.

Who hears of an event is its type's audience (``events.TYPES``): an order's creator, the uploader,
the tenant's project managers or admins, the global admins. How they hear of it is their
preferences: in-app now, or gathered into a digest; by e-mail now, in a digest, or not at all. A
tenant with ``notifications_enabled: false`` gets in-app notifications only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from automat_pipeline.db.models import Tenant, User
from automat_pipeline.notify import events, messages, preferences
from automat_pipeline.notify.models import Delivery, Event, Notification, Webhook

AUDIENCE_ROLES = {"project_managers": "project_manager", "tenant_admins": "tenant_admin"}
CLAIM = text(
    "DELETE FROM event_queue WHERE event_id IN (SELECT event_id FROM event_queue ORDER BY event_id "
    "LIMIT :n FOR UPDATE SKIP LOCKED) RETURNING event_id"
)


def dispatch(session: Session, base_url: str, email: bool, limit: int = 1000) -> int:
    """Fan out up to ``limit`` queued events, in ``session``'s transaction; how many. ``email``: the
    deployment sends e-mail (an SMTP server is configured)."""
    ids = session.scalars(CLAIM, {"n": limit}).all()
    if not ids:
        return 0
    batch = list(session.scalars(select(Event).where(Event.id.in_(ids)).order_by(Event.id)))
    # an API change may have finished an order (its last line cancelled, a launch refused): summarise it
    events.orders_finished(session, sorted({order for e in batch if (order := _order_of(e))}))
    tenants = {t.id: t for t in session.scalars(select(Tenant).where(Tenant.id.in_({e.tenant_id for e in batch})))}
    enabled = {t: _enabled(tenant) for t, tenant in tenants.items()}
    people = _people(session, batch)
    prefs = preferences.of_users(session, {u.id: u.role for u in people.values()})
    hooks = _webhooks(session, batch)
    now = datetime.now(UTC)
    notes, deliveries = [], []
    for event in batch:
        kind = events.TYPES[event.type]
        if kind.audience:
            note = messages.message(event, base_url)
            for user in _audience(event, kind.audience, people):
                channels = getattr(prefs[user.id], kind.category)
                if channels.in_app == channels.email == "never":
                    continue
                mail = channels.email != "never" and email and (user.tenant_id is None or enabled[user.tenant_id])
                notes.append(
                    (
                        {
                            "tenant_id": user.tenant_id,
                            "user_id": user.id,
                            "key": f"event:{event.id}:user:{user.id}",
                            "event_id": event.id,
                            "category": kind.category,
                            "kind": note.kind,
                            "title": note.title,
                            "body": note.body,
                            "data": note.data,
                            "shown_at": now if channels.in_app == "immediate" else None,
                            "digest": channels.in_app if channels.in_app in preferences.DIGESTS else None,
                        },
                        (user.email, channels.email) if mail else None,
                    )
                )
        if event.tenant_id is not None and enabled.get(event.tenant_id):
            for hook in hooks[event.tenant_id]:
                if event.type == "webhook.test":  # to the one webhook named, active or not yet
                    wanted = hook.id == event.data.get("webhook_id")
                else:
                    wanted = hook.active and event.type in hook.event_types
                if wanted:
                    deliveries.append(
                        _delivery(
                            tenant_id=event.tenant_id,
                            key=f"webhook:{hook.id}:event:{event.id}",
                            channel="webhook",
                            webhook_id=hook.id,
                            event_id=event.id,
                            target=hook.url,
                        )
                    )
    deliveries += _notify(session, notes)
    for start in range(0, len(deliveries), 5000):
        session.execute(insert(Delivery).values(deliveries[start : start + 5000]).on_conflict_do_nothing())
    return len(batch)


def _enabled(tenant: Tenant) -> bool:
    """Whether the tenant gets e-mail and webhooks (its ``notifications_enabled``; in-app always)."""
    return (tenant.settings or {}).get("notifications_enabled", True) is not False


def _delivery(**values) -> dict:
    """A deliveries row with every column a multi-row insert names."""
    defaults = {"notification_id": None, "webhook_id": None, "event_id": None, "state": "pending", "digest": None}
    return defaults | values


def _order_of(event: Event) -> int | None:
    if event.type in ("order.submitted", "order.cancelled"):
        return int(event.subject.split(":")[1])
    if event.type.startswith("order_line."):
        return event.data.get("order_id")
    return None


def _people(session: Session, batch: list[Event]) -> dict[int, User]:
    """Every active user an event of ``batch`` may concern: owners, the tenants' staff, global admins."""
    tenants = {e.tenant_id for e in batch if e.tenant_id is not None}
    owners = {e.owner_id for e in batch if e.owner_id is not None}
    query = select(User).where(
        User.active,
        or_(
            User.id.in_(owners),
            User.tenant_id.in_(tenants) & User.role.in_(AUDIENCE_ROLES.values()),
            User.tenant_id.is_(None),
        ),
    )
    return {u.id: u for u in session.scalars(query)}


def _audience(event: Event, audience: tuple[str, ...], people: dict[int, User]) -> list[User]:
    """The users ``audience`` names for ``event``, each once; an event without its uploader goes to the
    tenant's admins."""
    found: dict[int, User] = {}
    for who in audience:
        if who in ("creator", "uploader"):
            owner = people.get(event.owner_id)
            if owner is not None and owner.tenant_id == event.tenant_id:
                found[owner.id] = owner
            elif who == "uploader" and event.owner_id is None:
                found |= {
                    u.id: u for u in people.values() if u.tenant_id == event.tenant_id and u.role == "tenant_admin"
                }
        elif who == "global_admins":
            found |= {u.id: u for u in people.values() if u.role == "global_admin"}
        elif event.tenant_id is not None:
            role = AUDIENCE_ROLES[who]
            found |= {u.id: u for u in people.values() if u.tenant_id == event.tenant_id and u.role == role}
    return list(found.values())


def _webhooks(session: Session, batch: list[Event]) -> dict[int, list[Webhook]]:
    found: dict[int, list[Webhook]] = defaultdict(list)
    tenants = {e.tenant_id for e in batch if e.tenant_id is not None}
    for hook in session.scalars(select(Webhook).where(Webhook.tenant_id.in_(tenants))):
        found[hook.tenant_id].append(hook)
    return found


def _notify(session: Session, notes: list[tuple[dict, tuple[str, str] | None]]) -> list[dict]:
    """Insert the notifications; the e-mail deliveries of the new ones."""
    deliveries = []
    for start in range(0, len(notes), 2000):
        chunk = notes[start : start + 2000]
        mail = {row["key"]: email for row, email in chunk if email}
        created = session.execute(
            insert(Notification)
            .values([row for row, _ in chunk])
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(Notification.id, Notification.key, Notification.tenant_id)
        ).all()
        for note_id, key, tenant_id in created:
            if key in mail:
                address, mode = mail[key]
                digest = mode if mode in preferences.DIGESTS else None
                deliveries.append(
                    _delivery(
                        tenant_id=tenant_id,
                        key=f"email:{key}",
                        channel="email",
                        notification_id=note_id,
                        target=address,
                        state="digest" if digest else "pending",
                        digest=digest,
                    )
                )
    return deliveries
