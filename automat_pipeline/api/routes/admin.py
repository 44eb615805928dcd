"""Tenants (global admins), users, and the tenant's settings.

Users are managed within a tenant (a global admin names it in X-Tenant-Id): global admins, who
have none, only from the CLI. Changes take effect at once (``accounts.change_user``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from automat_pipeline import policy
from automat_pipeline.api import accounts, audit
from automat_pipeline.api.dagster_client import DagsterUnavailable
from automat_pipeline.api.deps import Id, Tx, Who, owned, scoped_session, settings
from automat_pipeline.api.schemas import NewPassword
from automat_pipeline.api.security import Permission, Role, hash_password, new_user, normalize_email
from automat_pipeline.db import repository
from automat_pipeline.db.models import Tenant, User
from automat_pipeline.errors import AutomatError, Conflict, NotFound
from automat_pipeline.keys import KEY_PATTERN, path_under
from automat_pipeline.notify import events
from automat_pipeline.tenant_settings import TenantSettings

log = logging.getLogger(__name__)

router = APIRouter(tags=["administration"])


class TenantIn(BaseModel):
    slug: str = Field(
        pattern=KEY_PATTERN,
        description="Short name used in partition keys, paths and tags: 1-64 of A-Z a-z 0-9 . _ -, "
        "starting with a letter or digit.",
        examples=["acme"],
    )
    name: str = Field(min_length=1, max_length=200, description="Display name.", examples=["ACME Bearings"])


class TenantOut(TenantIn):
    id: int = Field(description="The tenant's id (X-Tenant-Id for global admins).")
    active: bool = Field(description="Whether its users may log in and its uploads and orders are processed.")


class TenantChange(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200, description="A new display name.")
    active: bool | None = Field(
        None,
        description="false: its users are signed out and cannot log in, its uploads wait in the inbox and its "
        "submitted lines stay pending, saying why; true: everything resumes.",
    )


class UserIn(BaseModel):
    email: str = Field(
        pattern=r"^[^@\s]+@[^@\s]+$",
        max_length=320,
        description="Login name; unique across all tenants, compared case-insensitively.",
        examples=["client@acme.example"],
    )
    password: NewPassword
    role: Role = Field(description="global_admin > tenant_admin > project_manager > client.")
    tenant_id: int | None = Field(
        None, ge=1, le=2**31 - 1, description="The user's tenant; default the caller's. Null only for global admins."
    )


class UserOut(BaseModel):
    id: int = Field(description="The user's id.")
    email: str = Field(description="Login name.")
    role: Role = Field(description="The user's role.")
    tenant_id: int | None = Field(description="The user's tenant; null for a global admin.")
    active: bool = Field(description="Whether the user may log in.")


class UserPage(BaseModel):
    total: int = Field(description="Matching users.")
    items: list[UserOut] = Field(description="This page, by id.")


class UserChange(BaseModel):
    role: Role | None = Field(
        None, description="A new role, at most tenant_admin (a global admin has no tenant); the user logs in again."
    )
    active: bool | None = Field(
        None, description="false: the user is signed out at once and cannot log in; true: may again."
    )


class PasswordReset(BaseModel):
    reset_token: str = Field(description="For POST /auth/password-reset, once; hand it to the user out of band.")
    expires_at: datetime = Field(description=f"When it expires ({accounts.RESET_MINUTES} minutes after issue).")


def user_out(u: User) -> UserOut:
    return UserOut(id=u.id, email=u.email, role=Role(u.role), tenant_id=u.tenant_id, active=u.active)


NOT_FOUND = {404: {"description": "No such tenant (or not yours)."}}
TAKEN = "this e-mail address cannot be used: it is taken"  # the same answer whichever tenant holds it


@router.post("/tenants", status_code=201, responses={409: {"description": "The slug is taken."}})
def create_tenant(body: TenantIn, request: Request, who: Who, tx: Tx) -> TenantOut:
    """Create a tenant (global admins): its row, its upload inbox and its partition."""
    who.require(Permission.manage_tenants)
    try:
        with tx.begin_nested():
            tenant_id = tx.scalar(text("SELECT automat_create_tenant(:s, :n)"), {"s": body.slug, "n": body.name})
    except IntegrityError as error:
        raise Conflict(f"tenant {body.slug!r} exists") from error
    path_under(settings(request).uploads_dir, body.slug).mkdir(parents=True, exist_ok=True)
    try:  # the sensor adds it too, with the tenant's first import
        request.app.state.dagster.add_partition("tenants", body.slug)
    except DagsterUnavailable as error:
        log.warning("tenant %s: partition not added yet (%s)", body.slug, error)
    return TenantOut(id=tenant_id, slug=body.slug, name=body.name, active=True)


@router.get("/tenants")
def list_tenants(who: Who, tx: Tx) -> list[TenantOut]:
    """Every tenant (global admins)."""
    who.require(Permission.manage_tenants)
    return [TenantOut(**row._asdict()) for row in tx.execute(text("SELECT * FROM automat_tenants()"))]


@router.patch("/tenants/{tenant_id}", responses={404: {"description": "No such tenant."}})
def change_tenant(tenant_id: Id, body: TenantChange, request: Request, who: Who) -> TenantOut:
    """Rename, deactivate or reactivate a tenant (global admins), effective at once."""
    who.require(Permission.manage_tenants)
    with scoped_session(settings(request).api_database_url, tenant_id) as s:  # its lines are held as its own
        tenant = accounts.change_tenant(s, tenant_id, body.name, body.active)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return TenantOut(**tenant._asdict())


@router.post("/users", status_code=201, responses={**NOT_FOUND, 409: {"description": "The e-mail is taken."}})
def create_user(body: UserIn, request: Request, who: Who, tx: Tx) -> UserOut:
    """Create a user: tenant admins in their own tenant, global admins anywhere."""
    tenant_id = body.tenant_id if body.tenant_id is not None or who.role is Role.global_admin else who.tenant_id
    if tenant_id != who.tenant_id or body.role is Role.global_admin:
        who.require(Permission.manage_all_users)
    else:
        who.require(Permission.manage_tenant_users)
    if (tenant_id is None) != (body.role is Role.global_admin):
        raise HTTPException(422, "a global admin has no tenant; every other role has one")
    try:
        if tenant_id is None:
            with tx.begin_nested():
                user_id = tx.scalar(
                    text("SELECT automat_create_global_admin(:e, :n, :h)"),
                    {"e": body.email, "n": normalize_email(body.email), "h": hash_password(body.password)},
                )
        else:  # in the tenant's own transaction: the policies check it as they check the caller's
            with scoped_session(settings(request).api_database_url, tenant_id) as s:
                if s.get(Tenant, tenant_id) is None:
                    raise NotFound(f"no tenant {tenant_id}")
                user = new_user(body.email, body.password, body.role, tenant_id)
                s.add(user)
                s.flush()
                user_id = user.id
                events.record(s, "user.created", ("user", user_id), tenant_id=tenant_id, actor=who, after=_shown(user))
                audit.request_done(s, who, request, tenant_id)  # written in the tenant's transaction
    except IntegrityError as error:
        raise Conflict(TAKEN) from error
    return UserOut(id=user_id, email=body.email, role=body.role, tenant_id=tenant_id, active=True)


def _shown(user: User) -> dict:
    return {"email": user.email, "role": user.role, "active": user.active}


@router.get("/users")
def list_users(
    who: Who,
    tx: Tx,
    role: Annotated[list[Role] | None, Query(description="Only users with these roles.")] = None,
    active: Annotated[bool | None, Query(description="Only active (true) or deactivated (false) users.")] = None,
    q: Annotated[str | None, Query(max_length=320, description="Part of the e-mail address, in any case.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
) -> UserPage:
    """The tenant's users (tenant admins; global admins for the tenant in X-Tenant-Id), by id."""
    who.require(Permission.manage_tenant_users)
    matching = [User.tenant_id == who.tenant()]
    if role:
        matching.append(User.role.in_([r.value for r in role]))
    if active is not None:
        matching.append(User.active == active)
    if q:
        matching.append(User.email_normalized.contains(normalize_email(q), autoescape=True))
    total = tx.scalar(select(func.count(User.id)).where(*matching))
    users = tx.scalars(select(User).where(*matching).order_by(User.id).limit(limit).offset(offset))
    return UserPage(total=total, items=[user_out(u) for u in users])


@router.patch(
    "/users/{user_id}",
    responses={
        404: {"description": "No such user in the tenant (a global admin is in none)."},
        409: {"description": "It would leave the tenant without an active tenant admin."},
    },
)
def change_user(user_id: Id, body: UserChange, who: Who, tx: Tx) -> UserOut:
    """Change a user's role, or deactivate or reactivate them: effective on their very next request
    (their sessions are revoked). Tenant admins grant at most tenant_admin; the tenant's last
    active tenant admin stays one."""
    who.require(Permission.manage_tenant_users)
    if body.role is Role.global_admin:
        who.require(Permission.manage_all_users)
        raise HTTPException(422, "a global admin has no tenant: create one with POST /users")
    user = owned(tx, User, user_id, who, "user")
    accounts.change_user(tx, user, body.role, body.active)
    return user_out(user)


@router.post(
    "/users/{user_id}/password-reset",
    status_code=201,
    responses={
        404: {"description": "No such user in the tenant."},
        409: {"description": "The user is deactivated."},
    },
)
def issue_password_reset(user_id: Id, who: Who, tx: Tx) -> PasswordReset:
    """A one-time token with which the user sets a new password at POST /auth/password-reset (no
    login needed); it expires soon, works once, and a newer one revokes it."""
    who.require(Permission.manage_tenant_users)
    token, expires = accounts.issue_reset(tx, owned(tx, User, user_id, who, "user"))
    return PasswordReset(reset_token=token, expires_at=expires)


@router.get("/settings")
def get_settings(who: Who, tx: Tx) -> TenantSettings:
    """The tenant's settings, defaults filled in."""
    who.require(Permission.settings)
    tenant = tx.get(Tenant, who.tenant())
    if tenant is None:
        raise HTTPException(404, "no such tenant")
    return TenantSettings.of(tenant.settings)


@router.put("/settings", responses=NOT_FOUND)
def put_settings(body: TenantSettings, request: Request, who: Who, tx: Tx) -> TenantSettings:
    """Replace the tenant's settings (validated as a whole)."""
    who.require(Permission.settings)
    tenant = tx.get(Tenant, who.tenant())
    if tenant is None:
        raise HTTPException(404, "no such tenant")
    over = body.over_limits(settings(request))
    if over:
        raise AutomatError("over_limit", "; ".join(over))
    policy.check_fallback(body, set(repository.material_library(tx, tenant)))
    before = TenantSettings().model_dump() | (tenant.settings or {})  # what applied: defaults filled in
    tenant.settings = body.model_dump()
    events.record(
        tx, "settings.changed", "settings", tenant_id=tenant.id, actor=who, before=before, after=tenant.settings
    )
    return body
