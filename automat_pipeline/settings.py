"""Every ``AUTOMAT_*`` setting in one typed object: its name, type, default and a help line.

``Settings()`` reads the environment (``AUTOMAT_`` and the field's name in capitals). The local and
ci deployments fill in what is left unset (``embedded.prepare``: folders under ``AUTOMAT_HOME``,
the embedded PostgreSQL, a local signing key); production takes everything from the environment
and refuses to start while a required setting is missing (``missing``). The README's
configuration table is ``markdown_table()``'s output, and a test keeps them equal.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[1]
PREFIX = "AUTOMAT_"
REQUIRED_IN_PRODUCTION = {"required_in_production": True}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    deployment: Literal["local", "ci", "production"] = Field(
        "local",
        description="`local`, `ci` (local, and the Docker tests may not skip) or `production` (every setting "
        "marked required from the environment, none defaulted; instance `docker/dagster.yaml`)",
    )
    home: Path = Field(REPO / ".automat", description="everything local: PostgreSQL data, uploads, media, Dagster home")
    database_url: str | None = Field(
        None,
        description="domain database as its owner (SQLAlchemy URL); unset: the embedded server's `automat` db",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    dagster_storage_url: str | None = Field(
        None,
        description="Dagster storage; the scheme must be `postgresql+psycopg2`; unset: the embedded `dagster` db",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    api_database_url: str | None = Field(
        None,
        description="the domain database as the API's role `automat_app` (row-level security applies to it); "
        "unset: the embedded server as that role",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    uploads_dir: Path | None = Field(
        None,
        description="the upload inbox, a folder per tenant; unset: `$AUTOMAT_HOME/uploads`",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    media_dir: Path | None = Field(
        None,
        description="produced media, a folder per tenant; unset: `$AUTOMAT_HOME/media`",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    blender: str = Field(
        str(REPO / ".venv-render" / "bin" / "python"),
        description="the Blender executable: a Blender 5.0.1 binary, or a Python with the bpy module",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    blender_scripts: Path = Field(
        REPO / "blender",
        description="the `blender/` folder of scripts Blender runs",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    jwt_secret: SecretStr | None = Field(
        None,
        description="the key access tokens are signed with (HS256); unset: made once in `$AUTOMAT_HOME/jwt_secret` "
        "(mode 600)",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    dagster_graphql_url: str = Field(
        "http://127.0.0.1:3000/graphql",
        description="the Dagster webserver's GraphQL endpoint, where the API launches and follows runs",
        json_schema_extra=REQUIRED_IN_PRODUCTION,
    )
    render_host: str | None = Field(
        None,
        max_length=128,
        description="this render host's name in `GET /render-hosts` (the run queue's `render_hosts` entry); "
        "unset: the machine's host name",
    )
    max_upload_mb: int = Field(512, ge=1, le=65536, description="largest API upload, in MiB")
    max_template_mb: int = Field(
        256,
        ge=1,
        le=4096,
        description="largest render template (.blend, its packed images included) a tenant admin may upload, in MiB",
    )
    max_body_kb: int = Field(
        1024, ge=16, le=65536, description="largest API request body other than an upload (JSON), in KiB"
    )
    # Deployment maxima: what one tenant's settings may ask of the shared workers (tenants choose below them).
    max_render_resolution: int = Field(4096, ge=16, le=8192, description="largest render a tenant may ask for, in px")
    max_render_samples: int = Field(1024, ge=1, le=4096, description="most samples per pixel a tenant may ask for")
    max_turntable_frames: int = Field(720, ge=2, le=3600, description="most frames of one turntable")
    max_render_seconds: int = Field(7200, ge=10, le=86400, description="longest time limit of one render, in s")
    max_cad_seconds: int = Field(1800, ge=10, le=3600, description="longest time limit of one STEP conversion, in s")
    max_cad_memory_mb: int = Field(8192, ge=256, le=16384, description="most memory one STEP conversion may use, MB")
    max_catalog_rows: int = Field(1_000_000, ge=1, le=1_000_000, description="most data rows of one workbook")
    max_workbook_mb: int = Field(1024, ge=1, le=1024, description="largest inflated workbook (zip-bomb guard), in MiB")
    metrics_token: SecretStr | None = Field(
        None,
        description="the bearer token GET /metrics asks for; unset: /metrics answers loopback callers only",
    )
    media_batch: int = Field(
        50,
        ge=1,
        le=1000,
        description="most products one media run makes: the upload sensor runs a burst of products in batches "
        "of consecutive ones (one run worker, OpenCascade forkserver and warm Blender each); 1: a run per product",
    )
    conversions_at_once: int = Field(
        0,
        ge=0,
        le=64,
        description="STEP conversions one media run makes at once, each in its own isolated process within its "
        "tenant's memory_mb; 0: one per CPU core the run's host gives it",
    )
    smtp_url: SecretStr | None = Field(
        None,
        description="where notification e-mails go: `smtp://` (plain), `smtp+starttls://` (STARTTLS required) or "
        "`smtps://` (TLS), `user:password@` to log in, `?cafile=` to trust a private CA; unset: no e-mail",
    )
    mail_from: str = Field("automat@localhost", description="the sender address of notification e-mails")
    public_url: str = Field(
        "http://127.0.0.1:8000", description="the API's address as people reach it, for links in e-mails"
    )
    webhook_private_networks: bool = Field(
        False,
        description="whether webhook URLs may reach loopback, private and link-local addresses (tests, closed "
        "networks); off, a tenant's webhook cannot probe the services beside the API",
    )
    alert_failure_rate: float = Field(
        0.25,
        gt=0,
        le=1,
        description="a tenant's share of failed order lines within an hour (of 10 or more) above which its "
        "admins are alerted",
    )
    alert_min_free_gb: float = Field(
        10, ge=0, description="free space of the media volume below which global admins are alerted, in GiB"
    )
    alert_stalled_minutes: int = Field(
        120, ge=1, description="a run queued or running longer than this is reported as stalled, in minutes"
    )
    fixtures_dir: Path = Field(
        REPO.parent / "shared" / "fixtures",
        description="real STEP files and workbooks from public projects (`step/`, `xlsx/`): the tests need them, "
        "the demo adds four when present",
    )

    @model_validator(mode="after")
    def _folders_under_home(self) -> Settings:
        """Unset folders lie under ``home`` (production names them all)."""
        for name, default in (("uploads_dir", "uploads"), ("media_dir", "media")):
            if getattr(self, name) is None and self.deployment != "production":
                object.__setattr__(self, name, self.home / default)
        return self

    @classmethod
    def env_name(cls, field: str) -> str:
        return PREFIX + field.upper()

    def missing(self) -> list[str]:
        """The settings production requires that are not set, by their variable names."""
        return [
            self.env_name(name)
            for name, info in type(self).model_fields.items()
            if (info.json_schema_extra or {}).get("required_in_production")
            and (name not in self.model_fields_set or getattr(self, name) is None)
        ]

    def environment(self) -> dict[str, str]:
        """These settings as ``AUTOMAT_*`` variables, for child processes and Dagster's ``EnvVar``."""
        values = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                values[self.env_name(name)] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return values


@cache
def deployment_limits() -> Settings:
    """This process's settings, read once: the maxima tenant settings and output types are checked against."""
    return Settings()


def markdown_table() -> str:
    """The README's configuration table: every setting with its meaning and local default."""
    rows = ["| variable | meaning | local default |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if default is None:
            shown = "—"
        elif isinstance(default, Path) or str(default).startswith(str(REPO)):
            shown = f"`{os.path.relpath(default, REPO)}`"  # as the repository's README shows paths
        else:
            shown = f"`{default}`"
        required = " (required in production)" if (info.json_schema_extra or {}).get("required_in_production") else ""
        rows.append(f"| `{Settings.env_name(name)}` | {info.description}{required} | {shown} |")
    return "\n".join(rows)
