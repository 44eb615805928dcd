"""The operator UI's gate: the reverse proxy in front of the Dagster webserver asks here whether a
request may pass (nginx ``auth_request``), and sends a browser without a session to the login form.

Only global admins pass, with the same accounts as the API: a session is an HttpOnly, SameSite
cookie holding a token for the ``operator`` audience (which the API refuses as a bearer token),
checked against the user's current state on every request, so deactivating or demoting an
operator shuts the UI at once.
"""

from __future__ import annotations

import html
from typing import Annotated

import jwt
from fastapi import APIRouter, Cookie, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import text

from automat_pipeline.api.accounts import authenticate, client_address
from automat_pipeline.api.deps import scoped_session, settings
from automat_pipeline.api.security import ALGORITHM, Role, access_token
from automat_pipeline.settings import Settings

router = APIRouter(prefix="/auth/operator", tags=["operator UI"])
COOKIE = "automat_operator"
AUDIENCE = "operator"
SESSION_MINUTES = 8 * 60
FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Automat operators</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 22rem; margin: 4rem auto">
<h1>Automat operators</h1><p>The Dagster UI is for global admins. {message}</p>
<form method="post" action="/automat-login"><input type="hidden" name="next" value="{next}">
<p><label>E-mail<br><input name="email" type="email" autocomplete="username" required></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Log in</button></p></form></body></html>"""


def _next(target: str) -> str:
    """Where to go after login: a path on this site only (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _form(target: str, message: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(FORM.format(next=html.escape(_next(target)), message=html.escape(message)), status)


@router.get("", status_code=204, responses={401: {"description": "No operator session."}})
def check(config: Annotated[Settings, Depends(settings)], session: Annotated[str | None, Cookie(alias=COOKIE)] = None):
    """204 when the session cookie belongs to an active global admin; else 401."""
    if session is None:
        raise HTTPException(401, "no operator session")
    try:
        claims = jwt.decode(
            session,
            config.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "role", "exp", "aud"]},
        )
    except jwt.InvalidTokenError as error:
        raise HTTPException(401, f"invalid operator session: {error}") from error
    with scoped_session(config.api_database_url, None) as s:
        state = s.execute(text("SELECT * FROM automat_user_state(:u)"), {"u": int(claims["sub"])}).one_or_none()
    if state is None or not state.active or state.role != Role.global_admin or state.token_version != claims.get("ver"):
        raise HTTPException(401, "the operator session ended")
    return Response(status_code=204)


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/") -> HTMLResponse:
    """The login form the proxy sends a browser without a session to."""
    return _form(next)


@router.post(
    "/login",
    response_class=HTMLResponse,
    status_code=303,
    responses={
        303: {"description": "Logged in: on to where the browser wanted to go, with the session cookie."},
        401: {"description": "The form again: unknown e-mail or wrong password.", "content": {"text/html": {}}},
        403: {"description": "The form again: not a global admin.", "content": {"text/html": {}}},
        429: {"description": "The form again: too many failed logins.", "content": {"text/html": {}}},
    },
)
def login(
    request: Request,
    config: Annotated[Settings, Depends(settings)],
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",
):
    """Check the operator's password (throttled like the API's login) and start a session."""
    try:
        user = authenticate(config.api_database_url, email, password, client_address(request))
    except HTTPException as error:
        if error.status_code == 429:
            return _form(next, "Too many failed logins: wait and try again.", 429)
        return _form(next, "Unknown e-mail or wrong password.", 401)
    if user.role != Role.global_admin:
        return _form(next, "Only global admins may use the operator UI.", 403)
    token = access_token(
        config.jwt_secret.get_secret_value(),
        user.id,
        Role(user.role),
        None,
        user.token_version,
        SESSION_MINUTES,
        audience=AUDIENCE,
    )
    response = RedirectResponse(_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_MINUTES * 60,
        httponly=True,
        samesite="strict",
        secure=request.headers.get("x-forwarded-proto") == "https",
        path="/",
    )
    return response


@router.post(
    "/logout", status_code=303, response_class=RedirectResponse, responses={303: {"description": "To the form."}}
)
def logout() -> RedirectResponse:
    """End the operator session in this browser."""
    response = RedirectResponse("/automat-login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
