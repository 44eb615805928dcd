"""Who is calling and the database transaction they work in.

A token is checked on every request against the user's current state (one indexed read, one
statement outside any transaction): a deactivated user, a changed role or a signed-out token is
refused at once, not when the token expires. Every request's transaction runs as the API role with
``app.current_tenant_id`` set (SET LOCAL), so row-level security holds even where a query forgot
its tenant filter; there is no bypass. A global admin acts on the tenant it names in the
``X-Tenant-Id`` header, under the same policies; what crosses tenants goes through the database's
own functions (migration 0010).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Header, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from automat_pipeline.api import audit
from automat_pipeline.api.security import Permission, Role, allowed, decode_access_token
from automat_pipeline.db.database import engine, session
from automat_pipeline.db.models import Tenant
from automat_pipeline.settings import Settings

POOL_SIZE = 40  # one connection per thread of the server's thread pool (anyio's default: 40)


@dataclass(frozen=True)
class Caller:
    user_id: int
    role: Role
    tenant_id: int | None  # the tenant acted on; a global admin's comes from X-Tenant-Id

    def can(self, permission: Permission) -> bool:
        return allowed(self.role, permission)

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise HTTPException(403, f"role {self.role.value} may not {permission.value.replace('_', ' ')}")

    def tenant(self) -> int:
        if self.tenant_id is None:
            raise HTTPException(400, "a global admin names the tenant it acts on in the X-Tenant-Id header")
        return self.tenant_id


def settings(request: Request) -> Settings:
    return request.app.state.settings


bearer = HTTPBearer(auto_error=False, description="The access token from POST /auth/login.")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    # int, not int | None: the schema then says integer, and absent means None
    x_tenant_id: Annotated[
        int, Header(ge=1, le=2**31 - 1, description="Global admins only: the tenant to act on.")
    ] = None,
) -> Caller:
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = decode_access_token(settings(request).jwt_secret.get_secret_value(), credentials.credentials)
        role = Role(claims["role"])
    except (jwt.InvalidTokenError, ValueError) as error:
        raise HTTPException(401, f"invalid token: {error}", headers={"WWW-Authenticate": "Bearer"}) from error
    user_id = int(claims["sub"])
    state = _user_state(settings(request).api_database_url, user_id)
    if state is None or not state.active or not state.tenant_active:
        raise HTTPException(401, "this account is deactivated", headers={"WWW-Authenticate": "Bearer"})
    if (state.role, state.tenant_id) != (role.value, claims.get("tenant_id")):
        raise HTTPException(401, "your role changed: log in again", headers={"WWW-Authenticate": "Bearer"})
    if state.token_version != claims.get("ver", 0):
        raise HTTPException(401, "this token was signed out", headers={"WWW-Authenticate": "Bearer"})
    tenant_id = x_tenant_id if role is Role.global_admin else claims.get("tenant_id")
    return Caller(user_id, role, tenant_id)


def _user_state(url: str, user_id: int):
    """The user's state (active, role, tenant, token version, the tenant's state), or None: a
    security-definer function, read in autocommit, so one round trip instead of a transaction's
    four."""
    with engine(url, POOL_SIZE).connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection.execute(text("SELECT * FROM automat_user_state(:u)"), {"u": user_id}).one_or_none()


def transaction(request: Request, who: Annotated[Caller, Depends(caller)]) -> Iterator[Session]:
    """The request's transaction, scoped to the caller's tenant for row-level security. Only a
    global admin's tenant (from X-Tenant-Id) is looked up: a user's own was in their state."""
    with scoped_session(settings(request).api_database_url, who.tenant_id) as s:
        if (
            who.role is Role.global_admin
            and who.tenant_id is not None
            and s.scalar(text("SELECT 1 FROM tenants WHERE id = :t"), {"t": who.tenant_id}) is None
        ):
            raise HTTPException(404, f"no tenant {who.tenant_id}")
        yield s
        audit.request_done(s, who, request)  # a change and its audit row commit together


def caller_tenant(database_url: str, who: Caller) -> Tenant:
    """The caller's tenant, read in a transaction of its own: for a route that streams a body, which
    holds no transaction while the body arrives."""
    with scoped_session(database_url, who.tenant()) as tx:
        tenant = tx.get(Tenant, who.tenant())
        if tenant is None:
            raise HTTPException(404, "no such tenant")
        return tenant


def owned(tx: Session, model, row_id: int, who: Caller, what: str):
    """The caller's tenant's ``model`` row ``row_id``; 404 (never 403) for another tenant's."""
    row = tx.scalar(select(model).where(model.id == row_id, model.tenant_id == who.tenant()))
    if row is None:
        raise HTTPException(404, f"no {what} {row_id}")
    return row


class scoped_session:
    """``with scoped_session(url, tenant_id) as s:`` one transaction that sees ``tenant_id``'s rows
    only (none for ``None``)."""

    def __init__(self, url: str, tenant_id: int | None):
        self.session = session(url, POOL_SIZE)
        self.tenant_id = tenant_id

    def __enter__(self) -> Session:
        self.session.begin()
        self.session.execute(
            text("SELECT set_config('app.current_tenant_id', :t, true)"),
            {"t": "" if self.tenant_id is None else str(self.tenant_id)},
        )
        return self.session

    def __exit__(self, kind, *_):
        if kind is None:
            self.session.commit()
        else:
            self.session.rollback()
        self.session.close()
        return False


# scope="function": the transaction commits before the response is sent, so a client's next
# request (perhaps served by another worker) sees what this one wrote.
Tx = Annotated[Session, Depends(transaction, scope="function")]
Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="A database id.")]
Who = Annotated[Caller, Depends(caller)]
