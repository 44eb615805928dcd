"""Engines, sessions and migrations for the domain database."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


@cache
def engine(url: str) -> Engine:
    """One pooled engine per URL and process."""
    return create_engine(url, pool_pre_ping=True)


def session(url: str) -> Session:
    return sessionmaker(engine(url), expire_on_commit=False)()


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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
