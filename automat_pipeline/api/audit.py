"""Every state-changing request leaves one audit row, in its own transaction.

``RequestId`` gives each request an id (the client's ``X-Request-Id`` if it is a plain token, else a
new one), answered in ``X-Request-Id``. ``request_done`` runs as the request's transaction ends
(``deps.transaction``): a request other than GET that wrote anything, or recorded an event, gets a
row naming the caller, their role and tenant, the route, the object, the changes the route
recorded with its events (before and after), and the request id. A request that fails rolls back
and leaves none (nothing changed).
"""

from __future__ import annotations

import re
import uuid

from fastapi import Request
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automat_pipeline.notify import audit

READING = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestId:
    """ASGI middleware: ``request.state.request_id``, echoed in ``X-Request-Id``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if TOKEN.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, with_id)


def request_done(session: Session, who, request: Request, tenant_id: int | None = None) -> None:
    """The audit row of ``request``, if it changed anything, in ``session``'s transaction (scoped to
    ``tenant_id`` where that is not the caller's)."""
    if request.method in READING or session.info.pop("unaudited", False):
        return
    session.flush()
    changes = session.info.pop("events", [])
    if not changes and session.scalar(text("SELECT pg_current_xact_id_if_assigned()")) is None:
        return  # a POST that only read (a ZIP, a dry run, a validation)
    route = request.scope.get("route")
    params = request.path_params
    audit.write(
        session,
        tenant_id=tenant_id or who.tenant_id,
        actor_id=who.user_id,
        role=who.role.value,
        source="api",
        action=f"{request.method} {route.path if route else request.url.path}",
        object=changes[0]["subject"] if changes else ",".join(f"{k}={v}" for k, v in params.items()) or None,
        summary={"changes": changes} if changes else {},
        request_id=getattr(request.state, "request_id", None),
    )
