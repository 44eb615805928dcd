"""Passwords, e-mail addresses, tokens, roles and the permission matrix.

Access tokens are short-lived HS256 JWTs (sub, role, tenant_id, ver, exp), checked on every request
against the user's current state; refresh and password reset tokens are random, stored as hashes
and used once. Only HS256 is accepted: ``alg: none`` and any other algorithm fail. Passwords are
argon2id; at login the API computes the digest from the stored hash's parameters and salt and the
database compares it, so the API's role never reads a password hash (migration 0010).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from argon2 import PasswordHasher, Type
from argon2.low_level import ARGON2_VERSION, hash_secret_raw

from automat_pipeline.db.models import User

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


def normalize_email(email: str) -> str:
    """The one form e-mail addresses are stored and compared in: NFKC, case-folded (so that "İ…",
    "ß" or a final sigma compare the same however they were typed, in Python and in PostgreSQL)."""
    return unicodedata.normalize("NFKC", email.strip()).casefold()


_DUMMY_KEY = secrets.token_bytes(32)


def login_digest(stored_prefix: str | None, password: str, email: str) -> str:
    """The argon2 digest of ``password`` under a stored hash's parameters and salt (``stored_prefix``:
    the encoded hash without its digest). An unknown address gets the parameters of a new hash and a
    salt of its own, so a wrong address costs exactly what a wrong password costs."""
    if stored_prefix:
        _, variant, version, params, salt = stored_prefix.split("$")
    else:
        variant, version = "argon2id", f"v={ARGON2_VERSION}"
        params = f"m={_hasher.memory_cost},t={_hasher.time_cost},p={_hasher.parallelism}"
        salt = base64.b64encode(hmac.digest(_DUMMY_KEY, email.encode(), "sha256")[:16]).decode().rstrip("=")
    costs = dict(item.split("=") for item in params.split(","))
    digest = hash_secret_raw(
        password.encode(),
        base64.b64decode(salt + "=" * (-len(salt) % 4)),
        time_cost=int(costs["t"]),
        memory_cost=int(costs["m"]),
        parallelism=int(costs["p"]),
        hash_len=_hasher.hash_len,
        type={"argon2id": Type.ID, "argon2i": Type.I, "argon2d": Type.D}[variant],
        version=int(version.removeprefix("v=")),
    )
    return base64.b64encode(digest).decode().rstrip("=")


def new_user(email: str, password: str, role: Role, tenant_id: int | None) -> User:
    """A user row, its address normalised and its password hashed."""
    return User(
        email=email,
        email_normalized=normalize_email(email),
        password_hash=hash_password(password),
        role=Role(role).value,
        tenant_id=tenant_id,
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def access_token(
    secret: str,
    user_id: int,
    role: Role,
    tenant_id: int | None,
    version: int = 0,
    minutes: int = ACCESS_MINUTES,
    audience: str | None = None,
) -> str:
    """A signed token; one for another ``audience`` (the operator UI's session) is no API token."""
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    claims = {"sub": str(user_id), "role": role.value, "tenant_id": tenant_id, "ver": version, "exp": expires}
    claims |= {"aud": audience} if audience else {}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(secret: str, token: str) -> dict:
    """The token's claims; raises ``jwt.InvalidTokenError`` if expired, tampered or not HS256."""
    return jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]})


def new_refresh_token() -> tuple[str, str, datetime]:
    """``(token for the client, its sha256 for the database, expiry)``."""
    return *new_secret_token(), datetime.now(UTC) + timedelta(days=REFRESH_DAYS)


def new_secret_token() -> tuple[str, str]:
    """A random token (refresh, password reset) and the sha256 the database keeps instead."""
    token = secrets.token_urlsafe(32)
    return token, token_sha256(token)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
