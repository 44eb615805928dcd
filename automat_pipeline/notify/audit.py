"""The audit trail: who changed what, when, through which request or CLI command.

``write`` is the one writer. The API writes one row per state-changing request, in the request's own
transaction (``automat_pipeline.api.audit``), so a change and its row commit together; the CLI's
admin commands write theirs as ``cli:<login>``. The API's role may insert and read rows, never
change or delete them (migration 0017).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping

from sqlalchemy.orm import Session

from automat_pipeline.notify.models import AuditEntry

MAX_VALUE = 500  # characters of one value in a summary


def compact(value):
    """``value`` for a summary: long texts cut, nested structures kept."""
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "…"
    if isinstance(value, Mapping):
        return {str(k): compact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [compact(v) for v in value[:50]]
    return value


def changed(before: Mapping | None, after: Mapping | None) -> tuple[dict, dict]:
    """Only the keys whose values differ, as (before, after)."""
    before, after = dict(before or {}), dict(after or {})
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys if k in before}, {k: after.get(k) for k in keys if k in after}


def note(session: Session, subject: str | None, type: str | None = None, before=None, after=None) -> None:
    """A change the current request's audit row names (``events.record`` notes each API event)."""
    change = (
        {"type": type, "subject": subject}
        | ({"before": before} if before else {})
        | ({"after": after} if after else {})
    )
    session.info.setdefault("events", []).append({k: v for k, v in change.items() if v is not None})


def write(
    session: Session,
    *,
    tenant_id: int | None,
    role: str,
    source: str,
    action: str,
    object: str | None = None,
    summary: dict | None = None,
    actor_id: int | None = None,
    actor: str | None = None,
    request_id: str | None = None,
) -> None:
    session.execute(
        AuditEntry.__table__.insert().values(
            tenant_id=tenant_id,
            actor_id=actor_id,
            actor=actor,
            role=role,
            source=source,
            action=action[:200],
            object=object[:200] if object else None,
            summary=compact(summary or {}),
            request_id=request_id,
        )
    )


def cli(session: Session, command: str, object: str, tenant_id: int | None = None, **after) -> None:
    """An operator's CLI command (``automat tenant create``, ``user create``, ``catalog import``)."""
    write(
        session,
        tenant_id=tenant_id,
        role="operator",
        source="cli",
        action=command,
        object=object,
        summary={"after": after},
        actor=f"cli:{getpass.getuser()}",
    )
