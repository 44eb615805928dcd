"""Engines, sessions and migrations for the domain database."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
PIPELINE_ROLE = "automat_pipeline"  # what a run's tenant-scoped transaction acts as (migration 0020)


@cache
def engine(url: str, pool_size: int = 5) -> Engine:
    """One pooled engine per URL and process. A server answering many requests at once needs a
    pool as large as its concurrency (past it, connections are opened and closed per request),
    skips the ping per checkout (a round trip) for an hourly recycle, and plans every query for
    its values: psycopg's prepared statements turn generic after a few runs, and a generic plan
    cannot see that a search matches few products."""
    if pool_size > 5:
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=3600,
            connect_args={"prepare_threshold": None},
        )
    return create_engine(url, pool_pre_ping=True)


def database_away(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it: Dagster's storage wraps it) says the database went away
    (stopped, restarting, failing over, not accepting connections yet), rather than that a
    statement failed: the same work will do once it is back."""
    while error is not None:
        if isinstance(error, InterfaceError):
            return True
        if isinstance(error, OperationalError):
            sqlstate = getattr(error.orig, "sqlstate", None)
            # 08: connection exceptions; 57P01-03: an administrator's shutdown, a crash, not accepting yet
            return error.connection_invalidated or not sqlstate or sqlstate[:2] == "08" or sqlstate[:4] == "57P0"
        error = error.__cause__
    return False


def session(url: str, pool_size: int = 5) -> Session:
    return sessionmaker(engine(url, pool_size), expire_on_commit=False)()


def scope(s: Session, tenant: str | None) -> None:
    """Restrict the rest of the transaction to ``tenant``'s rows (a slug; none for an unknown one, and
    for None until ``as_tenant`` names one): its id looked up as the owner, then the pipeline's role
    taken, which the tenants' policies bind (migration 0020). What must cross tenants goes through the
    security-definer functions granted to the role (migrations 0010, 0022)."""
    s.execute(
        text(
            "SELECT set_config('app.current_tenant_id', "
            "coalesce((SELECT id::text FROM tenants WHERE slug = :slug), ''), true)"
        ),
        {"slug": tenant},
    )
    s.execute(text(f"SET LOCAL ROLE {PIPELINE_ROLE}"))


def as_tenant(s: Session, tenant_id: int | None) -> None:
    """Under ``scope``: from here on the transaction sees ``tenant_id``'s rows only (None: no tenant's),
    until the next call or until a savepoint opened before this one is rolled back."""
    s.flush()  # what the session holds is written where it was made
    s.execute(
        text("SELECT set_config('app.current_tenant_id', :t, true)"), {"t": "" if tenant_id is None else str(tenant_id)}
    )


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (the newest by default)."""
    _alembic(url, command.upgrade, revision)


def downgrade(url: str, revision: str) -> None:
    """Take the schema back to ``revision`` (``base``: nothing), to roll a release back."""
    _alembic(url, command.downgrade, revision)


def _alembic(url: str, step, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine(url).begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def set_role_password(url: str, role_url: str) -> None:
    """Give the role that ``role_url`` logs in as the password it carries (production: the API's
    role, which the migrations create without one). A URL without a password changes nothing."""
    role = make_url(role_url)
    if role.password is None:
        return
    statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role.username), sql.Literal(role.password))
    with engine(url).begin() as connection:
        connection.connection.driver_connection.execute(statement)


def reload(url: str) -> None:
    """Make the server re-read its configuration (pg_hba.conf)."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_reload_conf()"))
    finally:
        admin.dispose()


def ensure_database(server_url: str, name: str) -> None:
    """Create database ``name`` on the server if it is missing (CREATE DATABASE cannot run in a transaction)."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
