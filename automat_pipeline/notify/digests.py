"""Digests: what waits for a user's hourly or daily digest, gathered into one notification (in-app)
and one e-mail. Built by the ``notification_digests`` job, which Dagster's schedules run at the top
of every hour and at 07:00 UTC; the deliverer sends the e-mails.

Each digest takes what arrived before its scheduled time and was not gathered yet, under row locks,
so a schedule tick run twice (or two runs at once) gathers each item once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from automat_pipeline.notify import messages
from automat_pipeline.notify.models import Delivery, Notification

PERIODS = ("hourly", "daily")


def build(session: Session, period: str, until: datetime) -> dict[str, int]:
    """Gather everything waiting for the ``period`` digest that arrived before ``until``: how many
    in-app digests and digest e-mails were made."""
    assert period in PERIODS, period
    return {"in_app": _in_app(session, period, until), "email": _email(session, period, until)}


def _in_app(session: Session, period: str, until: datetime) -> int:
    waiting = session.scalars(
        select(Notification)
        .where(Notification.digest == period, Notification.digest_id.is_(None), Notification.created_at < until)
        .order_by(Notification.user_id, Notification.id)
        .with_for_update(skip_locked=True)
    ).all()
    by_user: dict[int, list[Notification]] = defaultdict(list)
    for note in waiting:
        by_user[note.user_id].append(note)
    for user_id, notes in by_user.items():
        title, body = messages.digest(period, [(n.title, n.body) for n in notes])
        digest_id = session.scalar(
            insert(Notification)
            .values(
                tenant_id=notes[0].tenant_id,
                user_id=user_id,
                key=f"digest:in_app:{period}:{user_id}:{until.isoformat()}",
                category="digest",
                kind="digest",
                title=title,
                body=body,
                data={"period": period, "notifications": [n.id for n in notes]},
                shown_at=datetime.now(UTC),
            )
            .returning(Notification.id)
        )
        session.execute(
            update(Notification).where(Notification.id.in_([n.id for n in notes])).values(digest_id=digest_id)
        )
    return len(by_user)


def _email(session: Session, period: str, until: datetime) -> int:
    waiting = session.execute(
        select(Delivery, Notification.user_id, Notification.title, Notification.body)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Delivery.state == "digest", Delivery.digest == period, Delivery.created_at < until)
        .order_by(Notification.user_id, Delivery.id)
        .with_for_update(of=Delivery, skip_locked=True)
    ).all()
    by_user: dict[tuple[int, str], list] = defaultdict(list)
    for delivery, user_id, title, body in waiting:
        by_user[(user_id, delivery.target)].append((delivery, title, body))
    for (user_id, address), items in by_user.items():
        subject, body = messages.digest(period, [(title, body) for _, title, body in items])
        batch_id = session.scalar(
            insert(Delivery)
            .values(
                tenant_id=items[0][0].tenant_id,
                key=f"digest:email:{period}:{user_id}:{until.isoformat()}",
                channel="email",
                target=address,
                payload={"subject": subject, "body": body},
            )
            .returning(Delivery.id)
        )
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([d.id for d, _, _ in items]))
            .values(state="batched", batch_id=batch_id)
        )
    return len(by_user)
