"""One settings object: every AUTOMAT_* variable typed, documented once, and the README's table is it."""

import re
from typing import get_args

import pytest
from pydantic import BaseModel

from automat_pipeline.embedded import load_settings
from automat_pipeline.errors import AutomatError
from automat_pipeline.materials import AliasIn, MaterialIn
from automat_pipeline.output_types import OutputType
from automat_pipeline.settings import REPO, Settings, markdown_table
from automat_pipeline.step_params import PARAMETERS
from automat_pipeline.tenant_settings import TenantSettings


def test_the_readme_configuration_table_is_the_settings_object():
    readme = (REPO / "README.md").read_text()
    table = re.search(r"^\| variable \| meaning \| local default \|\n(?:\|.*\n)+", readme, re.M)
    assert table, "README.md has no configuration table"
    assert table.group(0).strip() == markdown_table(), (
        "README's configuration table differs from the settings; paste the output of "
        "`.venv/bin/python -c 'from automat_pipeline.settings import markdown_table; print(markdown_table())'`"
    )


def fields_without_help(model: type[BaseModel], where: str = "") -> list[str]:
    """Every field of ``model`` and of the models its fields hold, recursively, lacking a description."""
    missing = []
    for name, info in model.model_fields.items():
        if not info.description:
            missing.append(f"{where}{model.__name__}.{name}")
        for inner in _models(info.annotation):
            missing += fields_without_help(inner, f"{where}{model.__name__}.{name} → ")
    return missing


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


SETTINGS = [Settings, TenantSettings, OutputType, MaterialIn, AliasIn, *PARAMETERS.values()]


@pytest.mark.parametrize("model", SETTINGS, ids=lambda m: m.__name__)
def test_every_setting_anywhere_has_a_help_text(model):
    """The deployment's, a tenant's (its cad and catalog sections too), an output type's, a
    material's and every workflow step's parameters."""
    assert fields_without_help(model) == []


def test_the_api_schema_shows_every_tenant_setting_with_its_help_and_bounds(api):
    schemas = api.app.openapi()["components"]["schemas"]
    cad = schemas["CadSettings"]["properties"]
    assert cad["timeout_seconds"]["description"] and cad["timeout_seconds"]["maximum"] == 3600
    assert cad["memory_mb"]["minimum"] == 256 and cad["memory_mb"]["maximum"] == 16384
    for name in ("TenantSettings", "CadSettings", "CatalogSettings", "MaterialIn"):
        assert [p for p, v in schemas[name]["properties"].items() if not v.get("description")] == [], name


def test_production_names_every_missing_setting_and_nothing_else(monkeypatch):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(Settings.env_name(name), raising=False)
    monkeypatch.setenv("AUTOMAT_DEPLOYMENT", "production")
    monkeypatch.setenv("AUTOMAT_DATABASE_URL", "postgresql+psycopg://db/automat")
    missing = Settings().missing()
    assert "AUTOMAT_DATABASE_URL" not in missing and "AUTOMAT_JWT_SECRET" in missing
    assert "AUTOMAT_MAX_UPLOAD_MB" not in missing  # has a safe default everywhere


def test_local_folders_lie_under_home_and_reach_children_as_variables(tmp_path, monkeypatch):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(Settings.env_name(name), raising=False)
    monkeypatch.setenv("AUTOMAT_HOME", str(tmp_path))
    monkeypatch.setenv("AUTOMAT_JWT_SECRET", "s" * 40)
    settings = Settings()
    assert (settings.uploads_dir, settings.media_dir) == (tmp_path / "uploads", tmp_path / "media")
    environment = settings.environment()
    assert environment["AUTOMAT_UPLOADS_DIR"] == str(tmp_path / "uploads")
    assert environment["AUTOMAT_JWT_SECRET"] == "s" * 40 and "s" * 40 not in repr(settings)


def test_an_invalid_value_is_a_classified_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("AUTOMAT_DEPLOYMENT", "staging")
    with pytest.raises(AutomatError, match=r"invalid_settings: AUTOMAT_DEPLOYMENT: Input should be 'local'"):
        load_settings()
