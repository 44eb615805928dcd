"""The upload sensor on a temporary inbox and the real domain database."""

import json
import os
import shutil
import unicodedata
from pathlib import Path

import pytest
from conftest import STEP_FIXTURES, login
from dagster import DagsterInstance, SkipReason, build_sensor_context
from openpyxl import Workbook
from sqlalchemy import select

from automat_pipeline.catalog_import import import_workbook
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import ProductFile
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.defs.uploads.sensor import upload_sensor

SCREW = STEP_FIXTURES / "occt" / "screw.step"


@pytest.fixture
def tick(env):
    database = Database(url=env["AUTOMAT_DATABASE_URL"])
    media = MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"])
    instance = DagsterInstance.ephemeral()
    state = {"cursor": None}

    def evaluate():
        context = build_sensor_context(
            instance=instance, cursor=state["cursor"], resources={"database": database, "media": media}
        )
        result = upload_sensor(context)
        if isinstance(result, SkipReason):
            return []
        state["cursor"] = result.cursor
        return result.run_requests

    evaluate.state = state
    return evaluate


@pytest.fixture
def catalogue(env, tmp_path):
    """Import rows (PIM-ID, name, STEP file) for tenant acme, as the catalogue asset would."""

    def load(rows):
        wb = Workbook()
        for row in [["PIM-ID", "Name", "STEP file"], *rows]:
            wb.active.append(row)
        wb.save(tmp_path / "list.xlsx")
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            import_workbook(s, repository.tenant(s, "acme"), tmp_path / "list.xlsx", "test")

    return load


@pytest.fixture
def inbox(env, catalogue):
    catalogue([["SCREW-1", "Screw", "screw.step"]])
    path = Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme"
    path.mkdir(parents=True)
    return path


def test_new_file_once_same_file_never_changed_file_once(tick, inbox):
    assert tick() == []  # the import's product has no STEP file yet
    shutil.copyfile(SCREW, inbox / "screw.step")
    first = tick()
    assert [(r.job_name, r.partition_key) for r in first] == [("product_media", "acme|SCREW-1")]
    assert tick() == []
    os.utime(inbox / "screw.step")  # touched, same bytes: requested again under the same run key,
    assert [r.run_key for r in tick()] == [first[0].run_key]  # which the daemon skips
    with open(inbox / "screw.step", "ab") as f:
        f.write(b"\n/* revised */\n")
    changed = tick()
    assert len(changed) == 1 and changed[0].run_key != first[0].run_key


def test_step_file_before_its_product_runs_when_the_catalogue_adds_it(tick, inbox, catalogue):
    shutil.copyfile(SCREW, inbox / "NEW-9.step")
    assert tick() == []
    catalogue([["SCREW-1", "Screw", "screw.step"], ["NEW-9", "New", None]])
    assert [r.partition_key for r in tick()] == ["acme|NEW-9"]
    assert tick() == []  # the import is dispatched once


def test_workbook_requests_an_import_of_that_workbook(tick, inbox):
    wb = Workbook()
    wb.active.append(["PIM-ID", "Name"])
    wb.save(inbox / "list.xlsx")
    tick()  # dispatches the fixture's own import
    wb.save(inbox / "more.xlsx")
    [request] = tick()
    assert (request.job_name, request.partition_key) == ("import_catalog", "acme")
    assert request.run_config == {
        "ops": {"product_catalog": {"config": {"workbooks": ["more.xlsx"], "trigger": "sensor"}}}
    }
    assert tick() == []


def test_cursor_stays_small(tick, inbox):
    for i in range(50):
        shutil.copyfile(SCREW, inbox / f"SCREW-{i}.step")
    tick()
    cursor = json.loads(tick.state["cursor"])
    assert cursor["waiting"] == [] and len(cursor["at_high_water"]) <= 50
    assert len(tick.state["cursor"]) < 50 * 200


def test_files_of_an_unknown_tenant_wait_for_it(tick, env):
    inbox = Path(env["AUTOMAT_UPLOADS_DIR"]) / "newco"
    inbox.mkdir(parents=True)
    wb = Workbook()
    wb.active.append(["PIM-ID", "Name"])
    wb.save(inbox / "list.xlsx")
    assert tick() == []
    assert json.loads(tick.state["cursor"])["waiting"] == [str(inbox / "list.xlsx")]
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        repository.tenant(s, "newco")
    assert [r.partition_key for r in tick()] == ["newco"]
    assert json.loads(tick.state["cursor"])["waiting"] == []


def test_a_step_file_uploaded_under_a_german_name_meets_the_product_list_that_names_it(api, tick, catalogue):
    """A Mac sends the name decomposed (NFD), Excel keeps it composed: both name one inbox file."""
    headers = login(api, "client@acme.example")
    name = unicodedata.normalize("NFD", "Lagerzeichnung Größe 2.STEP")
    response = api.post("/uploads", headers=headers, files={"file": (name, SCREW.read_bytes())})
    assert response.status_code == 201, response.text
    catalogue([["SCREW-1", "Screw", "Lagerzeichnung  Größe 2.STEP"]])  # as typed: NFC, a double blank
    assert [r.partition_key for r in tick()] == ["acme|SCREW-1"]


def test_files_the_pipeline_cannot_take_are_recorded_with_their_reason(tick, inbox, env):
    other = Path(env["AUTOMAT_UPLOADS_DIR"]) / "beta"
    other.mkdir()
    shutil.copyfile(SCREW, other / "secret.step")
    (inbox / "screw.step").symlink_to(other / "secret.step")  # another tenant's file
    (inbox / "part.igs").write_bytes(b"IGES")
    (inbox / "line\nbreak.stp").write_bytes(SCREW.read_bytes())
    (inbox / ".partial.step.part").write_bytes(b"ISO")  # an upload still arriving: not looked at
    assert tick() == []
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        files = {f.filename: (f.kind, f.status, f.error) for f in s.scalars(select(ProductFile))}
    assert files["screw.step"][:2] == ("step", "rejected")
    assert files["screw.step"][2].startswith("not_a_file: 'screw.step' is a symbolic link")
    assert files["part.igs"][:2] == ("other", "rejected") and files["part.igs"][2].startswith("unsupported_file: ")
    assert files["line\nbreak.stp"][2].endswith("rename it 'line break.stp'")
    assert files["line\nbreak.stp"][2].startswith("invalid_file_name: ")
    assert ".partial.step.part" not in files and "secret.step" not in files


def test_a_file_name_that_is_no_utf8_is_recorded_not_a_crashed_tick(tick, inbox, env):
    """A Latin-1 name copied onto the share ("Größe" as bytes 0xF6, 0xDF): the tick records it."""
    latin1 = "Gr\xf6\xdfe".encode("latin-1").decode("utf-8", "surrogateescape")
    shutil.copyfile(SCREW, inbox / f"{latin1}.step")
    (inbox / f"{latin1}.xlsx").write_bytes(b"PK")
    assert tick() == []
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        files = {f.filename: (f.kind, f.status, f.error) for f in s.scalars(select(ProductFile))}
    assert files["Gr\ufffd\ufffde.step"][:2] == ("step", "rejected")
    assert files["Gr\ufffd\ufffde.xlsx"][:2] == ("catalog", "rejected")
    assert files["Gr\ufffd\ufffde.step"][2] == (
        "invalid_file_name: the name 'Gr\ufffd\ufffde.step' is not UTF-8 text (another system's encoding); rename it"
    )
