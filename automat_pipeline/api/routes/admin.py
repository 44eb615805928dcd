"""Tenants (global admins), users, and the tenant's settings."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from automat_pipeline.api.deps import Tx, Who
from automat_pipeline.api.security import Permission, Role, hash_password
from automat_pipeline.db.models import Tenant, User
from automat_pipeline.keys import KEY_PART
from automat_pipeline.tenant_settings import TenantSettings

router = APIRouter(tags=["administration"])


class TenantIn(BaseModel):
    slug: str = Field(
        pattern=KEY_PART.pattern, description="Short name used in partition keys, paths and tags.", examples=["acme"]
    )
    name: str = Field(min_length=1, max_length=200, description="Display name.", examples=["ACME Bearings"])


class TenantOut(TenantIn):
    id: int = Field(description="The tenant's id (X-Tenant-Id for global admins).")


class UserIn(BaseModel):
    email: str = Field(
        pattern=r"^[^@\s]+@[^@\s]+$",
        max_length=320,
        description="Login name; unique.",
        examples=["client@acme.example"],
    )
    password: str = Field(min_length=12, max_length=1024, description="At least 12 characters; stored argon2id.")
    role: Role = Field(description="global_admin > tenant_admin > project_manager > client.")
    tenant_id: int | None = Field(
        None, ge=1, le=2**31 - 1, description="The user's tenant; default the caller's. Null only for global admins."
    )


class UserOut(BaseModel):
    id: int = Field(description="The user's id.")
    email: str = Field(description="Login name.")
    role: Role = Field(description="The user's role.")
    tenant_id: int | None = Field(description="The user's tenant; null for a global admin.")


NOT_FOUND = {404: {"description": "No such tenant (or not yours)."}}


@router.post("/tenants", status_code=201, responses={409: {"description": "The slug is taken."}})
def create_tenant(body: TenantIn, who: Who, tx: Tx) -> TenantOut:
    """Create a tenant (global admins)."""
    who.require(Permission.manage_tenants)
    if tx.scalar(select(Tenant.id).where(Tenant.slug == body.slug)):
        raise HTTPException(409, f"tenant {body.slug!r} exists")
    tenant = Tenant(slug=body.slug, name=body.name, settings={})
    tx.add(tenant)
    tx.flush()
    return TenantOut(id=tenant.id, slug=tenant.slug, name=tenant.name)


@router.get("/tenants")
def list_tenants(who: Who, tx: Tx) -> list[TenantOut]:
    """Every tenant (global admins)."""
    who.require(Permission.manage_tenants)
    return [TenantOut(id=t.id, slug=t.slug, name=t.name) for t in tx.scalars(select(Tenant).order_by(Tenant.id))]


@router.post("/users", status_code=201, responses={**NOT_FOUND, 409: {"description": "The e-mail is taken."}})
def create_user(body: UserIn, who: Who, tx: Tx) -> UserOut:
    """Create a user: tenant admins in their own tenant, global admins anywhere."""
    tenant_id = body.tenant_id if body.tenant_id is not None or who.role is Role.global_admin else who.tenant_id
    if tenant_id != who.tenant_id or body.role is Role.global_admin:
        who.require(Permission.manage_all_users)
    else:
        who.require(Permission.manage_tenant_users)
    if (tenant_id is None) != (body.role is Role.global_admin):
        raise HTTPException(422, "a global admin has no tenant; every other role has one")
    if tenant_id is not None and tx.get(Tenant, tenant_id) is None:
        raise HTTPException(404, f"no tenant {tenant_id}")
    if tx.scalar(select(User.id).where(func.lower(User.email) == body.email.lower())):
        raise HTTPException(409, f"{body.email} is taken")
    user = User(email=body.email, password_hash=hash_password(body.password), role=body.role.value, tenant_id=tenant_id)
    tx.add(user)
    tx.flush()
    return UserOut(id=user.id, email=user.email, role=body.role, tenant_id=tenant_id)


@router.get("/users")
def list_users(who: Who, tx: Tx) -> list[UserOut]:
    """The tenant's users (tenant admins; global admins for the tenant in X-Tenant-Id)."""
    who.require(Permission.manage_tenant_users)
    users = tx.scalars(select(User).where(User.tenant_id == who.tenant()).order_by(User.id))
    return [UserOut(id=u.id, email=u.email, role=Role(u.role), tenant_id=u.tenant_id) for u in users]


@router.get("/settings")
def get_settings(who: Who, tx: Tx) -> TenantSettings:
    """The tenant's settings, defaults filled in."""
    who.require(Permission.settings)
    tenant = tx.get(Tenant, who.tenant())
    if tenant is None:
        raise HTTPException(404, "no such tenant")
    return TenantSettings(**tenant.settings)


@router.put("/settings", responses=NOT_FOUND)
def put_settings(body: TenantSettings, who: Who, tx: Tx) -> TenantSettings:
    """Replace the tenant's settings (validated as a whole)."""
    who.require(Permission.settings)
    tenant = tx.get(Tenant, who.tenant())
    if tenant is None:
        raise HTTPException(404, "no such tenant")
    tenant.settings = body.model_dump()
    return body
