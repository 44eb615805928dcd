"""Accounts: checking a password (with the throttle and the audit of failures), changing and
resetting it, and changing users and tenants, effective at once.

Login costs the same for an unknown address as for a wrong password (the same argon2 work, the same
round trips) and answers the same; failures are recorded (``login_failures``, the audit of failed
logins) and throttled per account and per client address. Only the right password learns that its
account or tenant is deactivated. The database's functions do what crosses tenants or touches a
secret (migrations 0010 and 0012): the API's role never reads a password hash or a token. The CLI
changes users and tenants through the same functions, as the database's owner.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request
from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from automat_pipeline.api import launcher
from automat_pipeline.api.deps import scoped_session
from automat_pipeline.api.security import (
    Role,
    hash_password,
    login_digest,
    new_secret_token,
    normalize_email,
    token_sha256,
)
from automat_pipeline.db.models import User
from automat_pipeline.errors import Conflict

FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 10  # in the window: then 429 until the oldest failure leaves it
MAX_FAILURES_PER_ADDRESS = 50
RESET_MINUTES = 60  # a one-time password reset token's life
UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}
log = logging.getLogger(__name__)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(database_url: str, email: str, password: str, address: str) -> Row:
    """The user whose address and password these are (a row of ``automat_login``: id, role,
    tenant_id, token_version); else 401, the failure recorded, or 429 while throttled."""
    email = normalize_email(email)
    digest = _digest(database_url, email, password, address)
    with scoped_session(database_url, None) as s:
        user = s.execute(text("SELECT * FROM automat_login(:e, :d)"), {"e": email, "d": digest}).one_or_none()
        if user is not None:
            if not user.active or not user.tenant_active:  # the password is right: say why
                what = "account" if not user.active else "account's tenant"
                raise HTTPException(401, f"this {what} is deactivated", headers=UNAUTHORIZED)
            s.execute(text("SELECT automat_login_succeeded(:e)"), {"e": email})
            return user
        s.execute(text("SELECT automat_login_failed(:e, :a)"), {"e": email, "a": address})
    log.warning("[AUTH] failed login for %r from %s", email, address)
    raise HTTPException(401, "unknown e-mail or wrong password", headers=UNAUTHORIZED)


def change_password(database_url: str, user_id: int, current: str, new: str, address: str) -> None:
    """Set the user's password if ``current`` is right (checked as at login, throttled and recorded
    like a failed login; 403 if wrong); every session of the user is revoked."""
    with scoped_session(database_url, None) as s:
        email = s.scalar(text("SELECT automat_user_email(:u)"), {"u": user_id})
    digest = _digest(database_url, email, current, address)
    new_hash = hash_password(new)
    with scoped_session(database_url, None) as s:
        changed = s.scalar(
            text("SELECT automat_password_change(:u, :d, :h)"), {"u": user_id, "d": digest, "h": new_hash}
        )
        if changed:
            s.execute(text("SELECT automat_login_succeeded(:e)"), {"e": email})
            return
        s.execute(text("SELECT automat_login_failed(:e, :a)"), {"e": email, "a": address})
    log.warning("[AUTH] wrong current password for %r from %s", email, address)
    raise HTTPException(403, "the current password is wrong")


def _digest(database_url: str, email: str, password: str, address: str) -> str:
    """The argon2 digest of ``password`` under the account's stored salt (429 while throttled)."""
    with scoped_session(database_url, None) as s:
        _throttled(s, email, address)
        prefix = s.scalar(text("SELECT automat_login_salt(:e)"), {"e": email})
    return login_digest(prefix, password, email)  # as costly for an unknown address


def _throttled(s: Session, email: str, address: str) -> None:
    """429 while the account or the client address has failed too often within the window."""
    failures = s.execute(
        text("SELECT * FROM automat_login_failures(:e, :a, :w)"), {"e": email, "a": address, "w": FAILURE_WINDOW}
    ).one()
    since = [
        at
        for count, limit, at in (
            (failures.by_account, MAX_FAILURES_PER_ACCOUNT, failures.account_since),
            (failures.by_address, MAX_FAILURES_PER_ADDRESS, failures.address_since),
        )
        if count >= limit
    ]
    if since:
        wait = max(1, math.ceil((min(since) + FAILURE_WINDOW - datetime.now(UTC)).total_seconds()))
        raise HTTPException(429, "too many failed logins: wait and try again", headers={"Retry-After": str(wait)})


def issue_reset(s: Session, user: User) -> tuple[str, datetime]:
    """A one-time password reset token for ``user`` and its expiry; any older one is revoked."""
    if not user.active:
        raise Conflict(f"user {user.id} is deactivated: activate it first")
    token, digest = new_secret_token()
    expires = datetime.now(UTC) + timedelta(minutes=RESET_MINUTES)
    s.execute(text("SELECT automat_password_reset_issue(:u, :h, :e)"), {"u": user.id, "h": digest, "e": expires})
    return token, expires


def change_user(s: Session, user: User, role: Role | None, active: bool | None) -> None:
    """Change a tenant user's role or active state, effective at once: a demoted or deactivated
    user's sessions are revoked (refresh tokens, and access tokens by the token version). A change
    that would leave the tenant without an active tenant admin is refused (409)."""
    changes_role = role is not None and role.value != user.role
    deactivates = active is False and user.active
    if (changes_role or deactivates) and user.role == Role.tenant_admin and user.active:
        admins = s.scalars(  # locked: two admins demoting each other at once cannot both succeed
            select(User.id)
            .where(User.tenant_id == user.tenant_id, User.role == Role.tenant_admin.value, User.active)
            .order_by(User.id)
            .with_for_update()
        ).all()
        if admins == [user.id]:
            raise Conflict("the tenant's last active tenant admin: make another user tenant admin first")
    if changes_role:
        user.role = role.value
    if active is not None:
        user.active = active
    s.flush()
    if changes_role or deactivates:
        s.execute(text("SELECT automat_sign_out(:u)"), {"u": user.id})


def change_tenant(s: Session, tenant_id: int, name: str | None, active: bool | None) -> Row | None:
    """Rename or (de)activate a tenant (the row of ``automat_update_tenant``; None if there is no
    such tenant). Deactivating signs its users out and holds its submitted lines, saying why;
    reactivating lets the launch loop take them again. ``s``: a session that sees the tenant's rows."""
    tenant = s.execute(
        text("SELECT * FROM automat_update_tenant(:t, :n, :a)"), {"t": tenant_id, "n": name, "a": active}
    ).one_or_none()
    if tenant is not None and active is not None:
        launcher.hold_lines(s, tenant_id, held=not active)
    return tenant


def reset_password(database_url: str, token: str, new: str) -> None:
    """Set the password of the user a reset token was issued for, once (401 otherwise); every
    session of the user is revoked, and the account's login throttle cleared. A token that cannot
    work costs no argon2 hash."""
    digest = token_sha256(token)
    with scoped_session(database_url, None) as s:
        status = s.scalar(text("SELECT automat_password_reset_status(:t)"), {"t": digest})
    if status == "ok":
        new_hash = hash_password(new)
        with scoped_session(database_url, None) as s:  # checks again, under a lock
            status = s.scalar(text("SELECT automat_password_reset_use(:t, :h)"), {"t": digest, "h": new_hash})
    if status == "inactive":
        raise HTTPException(401, "this account is deactivated", headers=UNAUTHORIZED)
    if status != "ok":
        reason = {"revoked": "revoked (a newer one was issued)"}.get(status, status)
        raise HTTPException(401, f"{reason} password reset token", headers=UNAUTHORIZED)
