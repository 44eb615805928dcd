"""Login, token refresh, sign-out, and passwords: changing one's own, setting one with a reset
token (``accounts`` checks and sets them)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from automat_pipeline.api import accounts, audit
from automat_pipeline.api.accounts import UNAUTHORIZED, authenticate, client_address
from automat_pipeline.api.deps import Who, scoped_session, settings
from automat_pipeline.api.schemas import NewPassword
from automat_pipeline.api.security import Role, access_token, new_refresh_token, token_sha256
from automat_pipeline.settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"])


class Login(BaseModel):
    email: str = Field(
        min_length=3, max_length=320, description="The user's e-mail address.", examples=["pm@acme.example"]
    )
    password: str = Field(min_length=1, max_length=1024, description="The user's password.")


class Refresh(BaseModel):
    refresh_token: str = Field(
        min_length=1, max_length=200, description="A refresh token from login or refresh; each is accepted once."
    )


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024, description="Your password now.")
    new_password: NewPassword


class PasswordResetUse(BaseModel):
    token: str = Field(
        min_length=1, max_length=200, description="The one-time token from POST /users/{user_id}/password-reset."
    )
    new_password: NewPassword


class Tokens(BaseModel):
    access_token: str = Field(description="A JWT (HS256) for the Authorization: Bearer header; expires in 15 min.")
    refresh_token: str = Field(description="Exchange at POST /auth/refresh for new tokens; valid 14 days, once.")
    token_type: str = Field("bearer", description="Always bearer.")
    role: Role = Field(description="The user's role.")
    tenant_id: int | None = Field(description="The user's tenant; null for a global admin.")


def _tokens(config: Settings, s: Session, user, family: str | None = None) -> Tokens:
    """New tokens for ``user`` (a row of ``automat_login`` or ``automat_user_state``); a refresh
    token continues its ``family`` or starts one."""
    token, digest, expires = new_refresh_token()
    s.execute(
        text("SELECT automat_refresh_issue(:u, :h, :f, :e)"),
        {"u": user.id, "h": digest, "f": family or secrets.token_hex(16), "e": expires},
    )
    role = Role(user.role)
    return Tokens(
        access_token=access_token(
            config.jwt_secret.get_secret_value(), user.id, role, user.tenant_id, user.token_version
        ),
        refresh_token=token,
        role=role,
        tenant_id=user.tenant_id,
    )


@router.post(
    "/login",
    responses={
        401: {
            "description": "Unknown e-mail or wrong password (the same answer, in the same time); with the "
            "right password, a deactivated account or tenant."
        },
        429: {"description": "Too many failed logins for this account or from this address; see Retry-After."},
    },
)
def login(body: Login, request: Request, config: Annotated[Settings, Depends(settings)]) -> Tokens:
    """Exchange e-mail and password for an access token and a refresh token."""
    user = authenticate(config.api_database_url, body.email, body.password, client_address(request))
    with scoped_session(config.api_database_url, None) as s:
        return _tokens(config, s, user)


@router.post("/refresh", responses={401: {"description": "Unknown, used, revoked or expired refresh token."}})
def refresh(body: Refresh, config: Annotated[Settings, Depends(settings)]) -> Tokens:
    """Exchange a refresh token (once) for new tokens. A used token that comes back (stolen, or
    replayed) revokes every token of its login, its successors included."""
    with scoped_session(config.api_database_url, None) as s:
        used = s.execute(text("SELECT * FROM automat_refresh_use(:h)"), {"h": token_sha256(body.refresh_token)}).one()
        if used.status != "ok":
            reason = {"reused": "this refresh token was used before: every token of its login is revoked"}
            s.commit()  # the family's revocation stands although the request fails
            raise HTTPException(401, reason.get(used.status, f"{used.status} refresh token"), headers=UNAUTHORIZED)
        user = s.execute(text("SELECT *, :u AS id FROM automat_user_state(:u)"), {"u": used.user_id}).one_or_none()
        if user is None or not user.active or not user.tenant_active:
            raise HTTPException(401, "this account is deactivated", headers=UNAUTHORIZED)
        return _tokens(config, s, user, used.family)


@router.post("/logout", status_code=204)
def logout(who: Who, request: Request, config: Annotated[Settings, Depends(settings)]) -> None:
    """Sign out everywhere: every refresh token of yours is revoked and every access token refused."""
    with scoped_session(config.api_database_url, who.tenant_id) as s:
        s.execute(text("SELECT automat_sign_out(:u)"), {"u": who.user_id})
        audit.request_done(s, who, request)


@router.post(
    "/password",
    responses={
        403: {"description": "The current password is wrong (it counts as a failed login)."},
        429: {"description": "Too many failed logins for this account or from this address; see Retry-After."},
    },
)
def change_password(
    body: PasswordChange, request: Request, who: Who, config: Annotated[Settings, Depends(settings)]
) -> Tokens:
    """Change your password. Every session of yours ends (elsewhere too); this one goes on with the
    tokens returned."""
    accounts.change_password(
        config.api_database_url, who.user_id, body.current_password, body.new_password, client_address(request)
    )
    with scoped_session(config.api_database_url, None) as s:
        user = s.execute(text("SELECT *, :u AS id FROM automat_user_state(:u)"), {"u": who.user_id}).one()
        return _tokens(config, s, user)


@router.post(
    "/password-reset",
    status_code=204,
    responses={
        401: {"description": "Unknown, used, revoked (a newer one exists) or expired token; or a deactivated account."}
    },
)
def reset_password(body: PasswordResetUse, config: Annotated[Settings, Depends(settings)]) -> None:
    """Set a new password with a one-time reset token from an admin (no login needed). Every session
    of the user ends; log in with the new password."""
    accounts.reset_password(config.api_database_url, body.token, body.new_password)
