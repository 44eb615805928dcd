"""Accounts: checking a password, with the throttle and the audit of failures.

Login costs the same for an unknown address as for a wrong password (the same argon2 work, the same
round trips) and answers the same; failures are recorded (``login_failures``, the audit of failed
logins) and throttled per account and per client address. The database's functions do what
crosses tenants (migration 0010): the API's role never reads a password hash.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request
from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from automat_pipeline.api.deps import scoped_session
from automat_pipeline.api.security import login_digest, normalize_email

FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 10  # in the window: then 429 until the oldest failure leaves it
MAX_FAILURES_PER_ADDRESS = 50
UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}
log = logging.getLogger(__name__)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(database_url: str, email: str, password: str, address: str) -> Row:
    """The user whose address and password these are (a row of ``automat_login``: id, role,
    tenant_id, token_version); else 401, the failure recorded, or 429 while throttled."""
    email = normalize_email(email)
    with scoped_session(database_url, None) as s:
        _throttled(s, email, address)
        prefix = s.scalar(text("SELECT automat_login_salt(:e)"), {"e": email})
    digest = login_digest(prefix, password, email)  # as costly for an unknown address
    with scoped_session(database_url, None) as s:
        user = s.execute(text("SELECT * FROM automat_login(:e, :d)"), {"e": email, "d": digest}).one_or_none()
        if user is not None and user.active and user.tenant_active:
            s.execute(text("SELECT automat_login_succeeded(:e)"), {"e": email})
            return user
        s.execute(text("SELECT automat_login_failed(:e, :a)"), {"e": email, "a": address})
    log.warning("[AUTH] failed login for %r from %s", email, address)
    raise HTTPException(401, "unknown e-mail or wrong password", headers=UNAUTHORIZED)


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
