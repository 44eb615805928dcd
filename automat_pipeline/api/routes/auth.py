"""Login and token refresh."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from automat_pipeline.api.deps import scoped_session, settings
from automat_pipeline.api.security import Role, access_token, new_refresh_token, password_matches, refresh_hash
from automat_pipeline.db.models import RefreshToken, User
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


class Tokens(BaseModel):
    access_token: str = Field(description="A JWT (HS256) for the Authorization: Bearer header; expires in 15 min.")
    refresh_token: str = Field(description="Exchange at POST /auth/refresh for new tokens; valid 14 days, once.")
    token_type: str = Field("bearer", description="Always bearer.")
    role: Role = Field(description="The user's role.")
    tenant_id: int | None = Field(description="The user's tenant; null for a global admin.")


def _tokens(config: Settings, s, user: User) -> Tokens:
    token, digest, expires = new_refresh_token()
    s.add(RefreshToken(user_id=user.id, token_sha256=digest, expires_at=expires))
    role = Role(user.role)
    return Tokens(
        access_token=access_token(config.jwt_secret.get_secret_value(), user.id, role, user.tenant_id),
        refresh_token=token,
        role=role,
        tenant_id=user.tenant_id,
    )


@router.post("/login", responses={401: {"description": "Unknown e-mail or wrong password."}})
def login(body: Login, config: Annotated[Settings, Depends(settings)]) -> Tokens:
    """Exchange e-mail and password for an access token and a refresh token."""
    with scoped_session(config.api_database_url, None, bypass=True) as s:  # no tenant is known before login
        user = s.scalar(select(User).where(func.lower(User.email) == body.email.lower(), User.active))
        if user is None or not password_matches(user.password_hash, body.password):
            raise HTTPException(401, "unknown e-mail or wrong password")
        return _tokens(config, s, user)


@router.post("/refresh", responses={401: {"description": "Unknown, used or expired refresh token."}})
def refresh(body: Refresh, config: Annotated[Settings, Depends(settings)]) -> Tokens:
    """Exchange a refresh token (once) for new tokens."""
    with scoped_session(config.api_database_url, None, bypass=True) as s:
        stored = s.scalar(
            select(RefreshToken).where(RefreshToken.token_sha256 == refresh_hash(body.refresh_token)).with_for_update()
        )
        now = datetime.now(UTC)
        if stored is None or stored.used_at is not None or stored.expires_at <= now:
            raise HTTPException(401, "unknown, used or expired refresh token")
        stored.used_at = now
        user = s.get(User, stored.user_id)
        if user is None or not user.active:
            raise HTTPException(401, "the user no longer exists or is inactive")
        return _tokens(config, s, user)
