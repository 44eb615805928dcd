"""One settings object: every AUTOMAT_* variable typed, documented once, and the README's table is it."""

import re

import pytest

from automat_pipeline.embedded import load_settings
from automat_pipeline.errors import AutomatError
from automat_pipeline.settings import REPO, Settings, markdown_table


def test_the_readme_configuration_table_is_the_settings_object():
    readme = (REPO / "README.md").read_text()
    table = re.search(r"^\| variable \| meaning \| local default \|\n(?:\|.*\n)+", readme, re.M)
    assert table, "README.md has no configuration table"
    assert table.group(0).strip() == markdown_table(), (
        "README's configuration table differs from the settings; paste the output of "
        "`.venv/bin/python -c 'from automat_pipeline.settings import markdown_table; print(markdown_table())'`"
    )


def test_every_setting_has_a_help_line():
    assert all(info.description for info in Settings.model_fields.values())


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
