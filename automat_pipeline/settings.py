"""Every ``AUTOMAT_*`` setting in one typed object: its name, type, default and a help line.

``Settings()`` reads the environment (``AUTOMAT_`` and the field's name in capitals). The local and
ci deployments fill in what is left unset (``embedded.prepare``: folders under ``AUTOMAT_HOME``,
the embedded PostgreSQL, a local signing key); production takes everything from the environment
and refuses to start while a required setting is missing (``missing``). The README's
configuration table is ``markdown_table()``'s output, and a test keeps them equal.
"""

from __future__ import annotations

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
        description="the Blender executable: a Blender 5.0.1 binary, or a Python with the bpy module "
        "(default: `.venv-render/bin/python`)",
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


def markdown_table() -> str:
    """The README's configuration table: every setting with its meaning and local default."""
    rows = ["| variable | meaning | local default |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = (
            "—"
            if default is None
            else f"`{Path(default).relative_to(REPO)}`"
            if str(default).startswith(str(REPO))
            else f"`{default}`"
        )
        required = " (required in production)" if (info.json_schema_extra or {}).get("required_in_production") else ""
        rows.append(f"| `{Settings.env_name(name)}` | {info.description}{required} | {shown} |")
    return "\n".join(rows)
