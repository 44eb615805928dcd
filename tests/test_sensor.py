"""The upload sensor on a temporary inbox and the real domain database."""

import json
import os
import shutil

import pytest
from dagster import DagsterInstance, SkipReason, build_sensor_context
from openpyxl import Workbook

from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.catalog import CatalogRow
from automat_pipeline.resources import Database, MediaStore
from automat_pipeline.sensors import upload_sensor
from conftest import STEP_FIXTURES

SCREW = STEP_FIXTURES / "occt" / "screw.step"


@pytest.fixture
def tick(env):
    database = Database(url=env["AUTOMAT_DATABASE_URL"])
    media = MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"])
    instance = DagsterInstance.ephemeral()
    state = {"cursor": None}

    def evaluate():
        context = build_sensor_context(instance=instance, cursor=state["cursor"],
                                       resources={"database": database, "media": media})
        result = upload_sensor(context)
        if isinstance(result, SkipReason):
            return []
        state["cursor"] = result.cursor
        return result.run_requests

    evaluate.state = state
    return evaluate


@pytest.fixture
def inbox(env):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant = repository.tenant(s, "acme")
        repository.upsert_products(s, tenant.id, [CatalogRow(2, "SCREW-1", "Screw", step_file="screw.step")])
    path = os.path.join(env["AUTOMAT_UPLOADS_DIR"], "acme")
    os.makedirs(path)
    return path


def test_new_file_once_same_file_never_changed_file_once(tick, inbox):
    shutil.copyfile(SCREW, os.path.join(inbox, "screw.step"))
    first = tick()
    assert [(r.job_name, r.partition_key, r.tags["automat/tenant"]) for r in first] == [
        ("product_media", "acme|SCREW-1", "acme")]
    assert tick() == []
    os.utime(os.path.join(inbox, "screw.step"))  # touched, same bytes: new mtime, same run key
    again = tick()
    assert [r.run_key for r in again] == [first[0].run_key]  # the daemon skips a run key it has run
    with open(os.path.join(inbox, "screw.step"), "ab") as f:
        f.write(b"\n/* revised */\n")
    changed = tick()
    assert len(changed) == 1 and changed[0].run_key != first[0].run_key


def test_step_file_waits_for_the_catalogue(tick, inbox, env):
    shutil.copyfile(SCREW, os.path.join(inbox, "NEW-9.step"))
    assert tick() == []
    assert json.loads(tick.state["cursor"])["waiting"] == [os.path.join(inbox, "NEW-9.step")]
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant = repository.tenant(s, "acme")
        repository.upsert_products(s, tenant.id, [CatalogRow(3, "NEW-9", "New")])
    assert [r.partition_key for r in tick()] == ["acme|NEW-9"]
    assert json.loads(tick.state["cursor"])["waiting"] == []


def test_workbook_requests_the_tenant_catalogue_import(tick, inbox):
    wb = Workbook()
    wb.active.append(["PIM-ID", "Name"])
    wb.save(os.path.join(inbox, "list.xlsx"))
    requests = tick()
    assert [(r.job_name, r.partition_key) for r in requests] == [("import_catalog", "acme")]
    assert tick() == []


def test_cursor_stays_small(tick, inbox):
    for i in range(50):
        shutil.copyfile(SCREW, os.path.join(inbox, f"SCREW-{i}.step" if i else "screw.step"))
    tick()
    cursor = json.loads(tick.state["cursor"])
    assert len(cursor["waiting"]) == 49  # only files no product names yet
    assert len(cursor["at_high_water"]) <= 50
    assert len(tick.state["cursor"]) < 50 * 200


def test_unknown_tenant_files_wait(tick, env):
    os.makedirs(os.path.join(env["AUTOMAT_UPLOADS_DIR"], "stranger"))
    shutil.copyfile(SCREW, os.path.join(env["AUTOMAT_UPLOADS_DIR"], "stranger", "x.step"))
    assert tick() == []
    assert len(json.loads(tick.state["cursor"])["waiting"]) == 1
