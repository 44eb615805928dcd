"""Passwords, tokens, roles and the permission matrix.

Access tokens are short-lived HS256 JWTs (sub, role, tenant_id, exp); refresh tokens are random,
stored as hashes and used once. Only HS256 is accepted: ``alg: none`` and any other algorithm fail.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ALGORITHM = "HS256"
ACCESS_MINUTES = 15
REFRESH_DAYS = 14
_hasher = PasswordHasher()


class Role(StrEnum):
    global_admin = "global_admin"
    tenant_admin = "tenant_admin"
    project_manager = "project_manager"
    client = "client"


class Permission(StrEnum):
    manage_tenants = "manage_tenants"
    manage_all_users = "manage_all_users"
    manage_tenant_users = "manage_tenant_users"
    settings = "settings"
    trigger_renders = "trigger_renders"
    view_all_orders = "view_all_orders"
    own_orders = "own_orders"
    reject_orders = "reject_orders"
    delete_renders = "delete_renders"
    view_analytics = "view_analytics"
    view_render_hosts = "view_render_hosts"


GA, TA, PM, CL = Role.global_admin, Role.tenant_admin, Role.project_manager, Role.client
MATRIX: dict[Permission, set[Role]] = {
    Permission.manage_tenants: {GA},
    Permission.manage_all_users: {GA},
    Permission.manage_tenant_users: {GA, TA},
    Permission.settings: {GA, TA},
    Permission.trigger_renders: {GA, TA, PM},
    Permission.view_all_orders: {GA, TA, PM},
    Permission.own_orders: {GA, TA, PM, CL},
    Permission.reject_orders: {GA, TA, PM},
    Permission.delete_renders: {GA, TA, PM},
    Permission.view_analytics: {GA, TA, PM},
    Permission.view_render_hosts: {GA},
}


def allowed(role: Role, permission: Permission) -> bool:
    return role in MATRIX[permission]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def access_token(secret: str, user_id: int, role: Role, tenant_id: int | None, minutes: int = ACCESS_MINUTES) -> str:
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    claims = {"sub": str(user_id), "role": role.value, "tenant_id": tenant_id, "exp": expires}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(secret: str, token: str) -> dict:
    """The token's claims; raises ``jwt.InvalidTokenError`` if expired, tampered or not HS256."""
    return jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]})


def new_refresh_token() -> tuple[str, str, datetime]:
    """``(token for the client, its sha256 for the database, expiry)``."""
    token = secrets.token_urlsafe(32)
    return token, refresh_hash(token), datetime.now(UTC) + timedelta(days=REFRESH_DAYS)


def refresh_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
