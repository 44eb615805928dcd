"""A catalogue larger than PostgreSQL's 65,535 bind parameters, imported into a new tenant of a
database that has statistics, then a sensor tick with many STEP files waiting: it neither stalls nor
fails (speed: bench/run.py scale)."""

import shutil
from pathlib import Path

import pytest
from conftest import STEP_FIXTURES
from dagster import DagsterInstance, build_sensor_context
from openpyxl import Workbook
from sqlalchemy import Engine, event, select, text

from automat_pipeline.catalog_import import import_workbook
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import CatalogImport
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.defs.uploads.sensor import BATCH, upload_sensor

pytestmark = pytest.mark.slow

PRODUCTS = 70_000  # over 65,535: an IN list of their PIM-IDs could not be sent
FILES = 2_000
RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def test_a_catalogue_over_the_parameter_limit_then_a_tick_with_many_step_files(env, tmp_path):
    url = env["AUTOMAT_DATABASE_URL"]
    with session(url) as s, s.begin():  # statistics that have seen another tenant only
        other = repository.tenant(s, "other")
        s.execute(
            text(
                "INSERT INTO products (tenant_id, pim_id, key, name, materials, attributes, source_file, active) "
                "SELECT :t, 'P-' || lpad(n::text, 6, '0'), 'P-' || lpad(n::text, 6, '0'), 'Other ' || n, '{}', "
                "'{}', 'products.xlsx', true FROM generate_series(0, :n - 1) n"
            ),
            {"t": other.id, "n": PRODUCTS},
        )
        s.execute(text("ANALYZE products"))
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Produkte")
    sheet.append(["PIM-ID", "Bezeichnung", "STEP-Datei", "Material: Cage"])
    for i in range(PRODUCTS):
        sheet.append([f"P-{i:06d}", f"Lager {i}", f"P-{i:06d}.step", "SCHAEFFLER_020201_Brass-Cage"])
    workbook.save(tmp_path / "products.xlsx")
    with session(url) as s, s.begin():
        result = import_workbook(s, repository.tenant(s, "acme"), tmp_path / "products.xlsx", "test")
    assert result.counts["created"] == PRODUCTS

    inbox = Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme"
    inbox.mkdir(parents=True)
    with_files = list(range(FILES - 50)) + list(range(10_000, 10_000 + 50 * 101, 101))  # a block, and scattered
    for i in with_files:
        shutil.copyfile(STEP_FIXTURES / "occt" / "screw.step", inbox / f"P-{i:06d}.step")

    instance = DagsterInstance.ephemeral()
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        media = MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"])
        tick = upload_sensor(
            build_sensor_context(instance=instance, resources={"database": Database(url=url), "media": media})
        )
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert len(statements) < 100, "a statement per file or product"
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    order = instance.get_dynamic_partitions("products")  # the new products' partitions, in key order
    requested = []
    for request in tick.run_requests:
        keys = order[order.index(request.tags[RANGE[0]]) : order.index(request.tags[RANGE[1]]) + 1]
        assert len(keys) == BATCH
        requested += keys
    assert sorted(requested) == sorted(f"acme|P-{i:06d}" for i in with_files)
    with session(url) as s:
        assert s.scalar(select(CatalogImport.dispatched).where(CatalogImport.id == result.import_id))
