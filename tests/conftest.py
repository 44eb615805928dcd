"""Shared fixtures: a real embedded PostgreSQL for the session, clean tables and folders per test."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import text

from automat_pipeline import cli
from automat_pipeline.api.app import create_app
from automat_pipeline.api.security import Role, hash_password
from automat_pipeline.db import repository
from automat_pipeline.db.database import engine, migrate, session, set_role_password
from automat_pipeline.db.models import Product, ProductFile, User
from automat_pipeline.embedded import REPO, api_url, database_url, start_server
from automat_pipeline.settings import Settings

# Each checkout's tests keep their temporary folders apart: pytest makes its shared temp root
# (/tmp/pytest-of-<user>) private again whenever a session starts, which would lock the embedded
# PostgreSQL (another user) out of data folders under it while another checkout's tests start.
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(Path(tempfile.gettempdir()) / f"automat-tests-{REPO.name}"))
Path(os.environ["PYTEST_DEBUG_TEMPROOT"]).mkdir(exist_ok=True)

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
    set_role_password(url, api_url(url))
    yield url
    del server


@pytest.fixture
def env(tmp_path: Path, domain_database: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AUTOMAT_* environment the definitions read, over empty tables and folders."""
    with engine(domain_database).begin() as conn:
        tables = "tenants, products, product_files, login_failures, inbox_files, observations, render_hosts"
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
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


@pytest.fixture
def run(capfd):
    """The command in this process: (exit code, stdout, stderr). The environment and the signal
    handlers ``main`` installs are restored afterwards."""
    saved_env, saved_signals = dict(os.environ), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def call(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        os.environ.update(env or {})
        code = cli.main(list(args))
        out, err = capfd.readouterr()
        return code, out, err

    yield call
    os.environ.clear()
    os.environ.update(saved_env)
    for number, handler in saved_signals.items():
        signal.signal(number, handler)


def blender_processes(marker: str) -> list[psutil.Process]:
    """Blender processes (running blender/render.py) writing ``marker``; not the CLI that started them."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if marker in " ".join(p.info["cmdline"] or []) and any(a.endswith("render.py") for a in p.info["cmdline"])
    ]


def fresh_home_env(home: Path) -> dict[str, str]:
    """This process's environment for a child on its own AUTOMAT_HOME: no AUTOMAT_/DAGSTER_ settings
    inherited, so it starts its own embedded PostgreSQL and Dagster instance there; only where the
    fixtures are stays, so that the child and the test agree on whether they are present."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))}
    return env | {"AUTOMAT_HOME": str(home), "AUTOMAT_FIXTURES_DIR": str(FIXTURES)}


# The API on the real database as its role: two tenants, a user of every role.

SECRET = "test-secret-that-is-long-enough-for-hs256"
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)  # argon2 is slow by design: hash once
ROLES = {"ga": Role.global_admin, "ta": Role.tenant_admin, "pm": Role.project_manager, "client": Role.client}


@pytest.fixture
def world(env):
    """Tenants acme and beta, a user of every role in acme, one client in beta, a product each."""
    url = env["AUTOMAT_DATABASE_URL"]
    with session(url) as s, s.begin():
        acme, beta = repository.tenant(s, "acme"), repository.tenant(s, "beta")
        ids = {"acme": acme.id, "beta": beta.id}
        users = [
            (f"{name}@acme.example", role, None if role is Role.global_admin else acme.id)
            for name, role in ROLES.items()
        ]
        users += [("client2@acme.example", Role.client, acme.id), ("client@beta.example", Role.client, beta.id)]
        for email, role, tenant_id in users:
            s.add(
                User(
                    email=email,
                    email_normalized=email,
                    password_hash=PASSWORD_HASH,
                    role=role.value,
                    tenant_id=tenant_id,
                )
            )
        for tenant, pim in ((acme, "6204-2RS"), (beta, "B-1")):
            s.add(
                Product(
                    tenant_id=tenant.id,
                    pim_id=pim,
                    key=pim,
                    name=f"Bearing {pim}",
                    category_key="ball",
                    lagertyp="Rillenkugellager",
                    materials={},
                    attributes={},
                    active=True,
                )
            )
        s.flush()
        products = {p.pim_id: p.id for p in s.query(Product)}
        for pim, tenant in (("6204-2RS", acme), ("B-1", beta)):
            s.add(
                ProductFile(
                    tenant_id=tenant.id,
                    product_id=products[pim],
                    filename=f"{pim}.stp",
                    kind="step",
                    sha256="0" * 64,
                    size_bytes=1,
                    status="ok",
                )
            )
    return {"tenants": ids, "products": products}


@pytest.fixture
def api(env, world, tmp_path):
    config = Settings(
        database_url=env["AUTOMAT_DATABASE_URL"],
        api_database_url=api_url(env["AUTOMAT_DATABASE_URL"]),
        jwt_secret=SECRET,
        dagster_graphql_url="http://127.0.0.1:9/graphql",  # nothing listens: Dagster is down
        uploads_dir=env["AUTOMAT_UPLOADS_DIR"],
        media_dir=env["AUTOMAT_MEDIA_DIR"],
        max_upload_mb=1,
        max_template_mb=1,
    )
    with TestClient(create_app(config, launcher=False)) as client:
        yield client


def login(api, email: str) -> dict[str, str]:
    response = api.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def as_role(api, world, name: str) -> dict[str, str]:
    headers = login(api, f"{name}@acme.example")
    return headers | ({"X-Tenant-Id": str(world["tenants"]["acme"])} if name == "ga" else {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe, seconds: float = 300, every: float = 1, show=None):
    """Poll ``probe`` until it returns something truthy; that value (a bounded wait, not a timing). On
    time-out the message holds what ``show()`` saw last (an order, a backfill): where things stood."""
    deadline = time.monotonic() + seconds
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s; last seen: {show() if show else value}")
        time.sleep(every)
    return value


@pytest.fixture
def live(env, world):
    """The API served by uvicorn in a thread of this process; its base URL."""
    settings = Settings(
        database_url=env["AUTOMAT_DATABASE_URL"],
        api_database_url=api_url(env["AUTOMAT_DATABASE_URL"]),
        jwt_secret=SECRET,
        dagster_graphql_url="http://127.0.0.1:9/graphql",
        uploads_dir=env["AUTOMAT_UPLOADS_DIR"],
        media_dir=env["AUTOMAT_MEDIA_DIR"],
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, launcher=False), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
