"""Shared fixtures: a real embedded PostgreSQL for the session, clean tables and folders per test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text

from automat_pipeline.db.database import engine, migrate
from automat_pipeline.embedded import REPO, database_url, start_server
from automat_pipeline.settings import Settings

FIXTURES = Settings().fixtures_dir  # AUTOMAT_FIXTURES_DIR
STEP_FIXTURES = FIXTURES / "step"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test of a module that uses the fixtures is skipped, saying where they were looked for, when
    they are absent (and fails under AUTOMAT_DEPLOYMENT=ci, where they must be)."""
    if FIXTURES.is_dir() or not {"FIXTURES", "STEP_FIXTURES"} & set(vars(item.module)):
        return
    reason = f"the real fixtures are not at {FIXTURES} (set AUTOMAT_FIXTURES_DIR, or put ../shared/fixtures beside"
    reason += " the repository)"
    if Settings().deployment == "ci":
        pytest.fail(f"AUTOMAT_DEPLOYMENT=ci needs them: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def domain_database() -> str:
    """A migrated domain database on a throw-away embedded PostgreSQL server."""
    server, admin_url = start_server(Path(tempfile.mkdtemp(prefix="automat-pg-")) / "data", cleanup_mode="delete")
    url = database_url(admin_url, "automat_test")
    migrate(url)
    yield url
    del server


@pytest.fixture
def env(tmp_path: Path, domain_database: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AUTOMAT_* environment the definitions read, over empty tables and folders."""
    with engine(domain_database).begin() as conn:
        conn.execute(text("TRUNCATE tenants, products, product_files, render_hosts RESTART IDENTITY CASCADE"))
    values = {
        "AUTOMAT_DATABASE_URL": domain_database,
        "AUTOMAT_UPLOADS_DIR": str(tmp_path / "uploads"),
        "AUTOMAT_MEDIA_DIR": str(tmp_path / "media"),
        "AUTOMAT_BLENDER": str(REPO / ".venv-render" / "bin" / "python"),
        "AUTOMAT_BLENDER_SCRIPTS": str(REPO / "blender"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def blender_processes(marker: str) -> list[psutil.Process]:
    """Blender processes (running blender/render.py) writing ``marker``; not the CLI that started them."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if marker in " ".join(p.info["cmdline"] or []) and any(a.endswith("render.py") for a in p.info["cmdline"])
    ]


def fresh_home_env(home: Path) -> dict[str, str]:
    """This process's environment for a child on its own AUTOMAT_HOME: no AUTOMAT_/DAGSTER_ settings
    inherited, so it starts its own embedded PostgreSQL and Dagster instance there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))}
    return env | {"AUTOMAT_HOME": str(home)}
