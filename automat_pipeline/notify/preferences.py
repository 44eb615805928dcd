"""What each person wants to hear, and how: per category (orders, imports, alerts) and channel
(in-app, e-mail), immediately, in an hourly or daily digest, or never; defaults per role.

A tenant whose settings say ``notifications_enabled: false`` gets in-app notifications only: no
e-mail and no webhooks, whatever its users chose.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from automat_pipeline.notify.models import NotificationPreference

Category = Literal["orders", "imports", "alerts"]
Channel = Literal["in_app", "email"]
Mode = Literal["immediate", "hourly", "daily", "never"]
CATEGORIES: tuple[Category, ...] = ("orders", "imports", "alerts")
CHANNELS: tuple[Channel, ...] = ("in_app", "email")
DIGESTS = ("hourly", "daily")


class Channels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    in_app: Mode = Field(
        description="In the API (GET /notifications): immediate; hourly or daily: gathered into one digest "
        "notification at the top of the hour (daily: at 07:00 UTC); never: not listed."
    )
    email: Mode = Field(
        description="E-mail to your address: immediate; hourly or daily: one digest e-mail with everything since "
        "the last one; never. No e-mail at all while the tenant's settings say notifications_enabled: false, or "
        "while the deployment has no SMTP server (AUTOMAT_SMTP_URL)."
    )


class Preferences(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: Channels = Field(
        description="Orders: one summary per order once every line is finished (counts, failures by class, the "
        "failed lines named; never one message per line), rejections (to the order's creator, with the reason) "
        "and resubmissions (to project managers)."
    )
    imports: Channels = Field(
        description="Imports: the summary of each workbook you uploaded (created, updated, unchanged, deactivated "
        "and rejected rows, the rejected rows' reasons, the report) and failed STEP conversions of your files."
    )
    alerts: Channels = Field(
        description="Staff alerts (tenant admins: their tenant's failure rate and failed webhooks; global admins: "
        "GPU hosts rendering on the CPU, Blender missing, runs stopped by run monitoring or stalled, failing "
        "sensors or code location, the media volume's free space, the tenant failure rates)."
    )


def _defaults(orders: tuple[Mode, Mode], imports: tuple[Mode, Mode], alerts: tuple[Mode, Mode]) -> Preferences:
    cells = {"orders": orders, "imports": imports, "alerts": alerts}
    return Preferences(**{c: Channels(in_app=a, email=e) for c, (a, e) in cells.items()})


DEFAULTS: dict[str, Preferences] = {  # role → (in_app, email) per category
    "client": _defaults(("immediate", "immediate"), ("immediate", "immediate"), ("never", "never")),
    "project_manager": _defaults(("immediate", "daily"), ("immediate", "immediate"), ("never", "never")),
    "tenant_admin": _defaults(("immediate", "daily"), ("immediate", "daily"), ("immediate", "immediate")),
    "global_admin": _defaults(("never", "never"), ("never", "never"), ("immediate", "immediate")),
}


def of_users(session: Session, roles: dict[int, str]) -> dict[int, Preferences]:
    """Each user's preferences (``roles``: user id → role): their own choices over their role's defaults."""
    chosen: dict[int, dict] = {user: DEFAULTS[role].model_dump() for user, role in roles.items()}
    if roles:
        for row in session.scalars(select(NotificationPreference).where(NotificationPreference.user_id.in_(roles))):
            chosen[row.user_id][row.category][row.channel] = row.mode
    return {user: Preferences.model_validate(cells) for user, cells in chosen.items()}


def save(session: Session, user_id: int, tenant_id: int | None, preferences: Preferences) -> None:
    """Store every cell of ``preferences`` as the user's own choice."""
    session.execute(NotificationPreference.__table__.delete().where(NotificationPreference.user_id == user_id))
    session.add_all(
        NotificationPreference(user_id=user_id, tenant_id=tenant_id, category=c, channel=ch, mode=mode)
        for c, channels in preferences.model_dump().items()
        for ch, mode in channels.items()
    )
