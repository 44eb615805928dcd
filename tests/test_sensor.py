"""The upload sensor on a temporary inbox and the real domain database."""

import os
import shutil
import unicodedata
from pathlib import Path

import pytest
from conftest import STEP_FIXTURES, login
from dagster import DagsterInstance, SkipReason, build_sensor_context
from openpyxl import Workbook
from sqlalchemy import Engine, event, select, text, update
from sqlalchemy.exc import ProgrammingError

from automat_pipeline.catalog_import import import_workbook
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import CatalogImport, Product, ProductFile
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.defs.uploads.sensor import upload_sensor

SCREW = STEP_FIXTURES / "occt" / "screw.step"
RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


@pytest.fixture
def instance():
    return DagsterInstance.ephemeral()


@pytest.fixture
def tick(env, instance):
    database = Database(url=env["AUTOMAT_DATABASE_URL"])
    media = MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"])
    state = {"cursor": None}

    def evaluate(keep_cursor: bool = True):
        context = build_sensor_context(
            instance=instance, cursor=state["cursor"], resources={"database": database, "media": media}
        )
        result = upload_sensor(context)
        if isinstance(result, SkipReason):
            return []
        if keep_cursor:  # else: as if Dagster never stored the tick's result
            state["cursor"] = result.cursor
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result.run_requests or []

    evaluate.state = state
    return evaluate


def workbook(path: Path, rows, header=("PIM-ID", "Name", "STEP file", "Materials")) -> Path:
    wb = Workbook()
    for row in [list(header), *rows]:
        wb.active.append(list(row))
    wb.save(path)
    return path


@pytest.fixture
def catalogue(env, tmp_path):
    """Import rows (PIM-ID, name, STEP file, materials) for a tenant, as the catalogue asset would."""

    def load(rows, tenant="acme"):
        path = workbook(tmp_path / f"{tenant}-list.xlsx", rows)
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            return import_workbook(s, repository.tenant(s, tenant), path, "test")

    return load


@pytest.fixture
def inbox(env, catalogue):
    catalogue([["SCREW-1", "Screw", "screw.step"]])
    path = Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme"
    path.mkdir(parents=True)
    return path


def test_new_content_once_whatever_the_modification_time(tick, inbox):
    assert tick() == []  # the import's product has no STEP file yet
    shutil.copyfile(SCREW, inbox / "screw.step")
    first = tick()
    assert [(r.job_name, r.partition_key) for r in first] == [("product_media", "acme|SCREW-1")]
    assert tick() == []
    os.utime(inbox / "screw.step")  # touched, same bytes: nothing
    assert tick() == []
    (inbox / "screw.step").unlink()
    shutil.copyfile(SCREW, inbox / "screw.step")  # dropped again, same bytes: nothing
    assert tick() == []
    before = (inbox / "screw.step").stat()
    data = (inbox / "screw.step").read_bytes()
    (inbox / "screw.step").write_bytes(data.replace(b"Author Name", b"Author NAME", 1))  # same size, new content,
    os.utime(inbox / "screw.step", ns=(before.st_atime_ns, before.st_mtime_ns))  # old modification time
    changed = tick()
    assert len(changed) == 1 and changed[0].run_key != first[0].run_key
    assert tick() == []


def test_step_file_before_its_product_runs_when_the_catalogue_adds_it(tick, inbox, catalogue):
    shutil.copyfile(SCREW, inbox / "NEW-9.step")
    assert tick() == []
    catalogue([["SCREW-1", "Screw", "screw.step"], ["NEW-9", "New", None]])
    assert [r.partition_key for r in tick()] == ["acme|NEW-9"]
    assert tick() == []  # the import is dispatched once


def test_workbook_requests_an_import_of_that_workbook(tick, inbox):
    workbook(inbox / "list.xlsx", [])
    tick()
    workbook(inbox / "more.xlsx", [])
    [request] = tick()
    assert (request.job_name, request.partition_key) == ("import_catalog", "acme")
    assert request.run_config == {
        "ops": {"product_catalog": {"config": {"workbooks": ["more.xlsx"], "trigger": "sensor"}}}
    }
    assert tick() == []


def test_cursor_stays_small(tick, inbox):
    for i in range(200):
        shutil.copyfile(SCREW, inbox / f"SCREW-{i}.step")
    tick()
    assert len(tick.state["cursor"]) < 100  # what the sensor knows of each file is in inbox_files


def test_files_of_an_unknown_tenant_wait_for_it(tick, env):
    inbox = Path(env["AUTOMAT_UPLOADS_DIR"]) / "newco"
    inbox.mkdir(parents=True)
    workbook(inbox / "list.xlsx", [])
    assert tick() == []
    assert tick() == []
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        repository.tenant(s, "newco")
    assert [r.partition_key for r in tick()] == ["newco"]
    assert tick() == []


def test_a_deactivated_tenants_uploads_wait_in_its_inbox(tick, inbox, catalogue, env, capfd):
    from automat_pipeline.api.accounts import change_tenant

    def active(value: bool) -> None:  # as `automat tenant activate|deactivate` does
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            change_tenant(s, repository.tenant(s, "acme").id, None, value)

    shutil.copyfile(SCREW, inbox / "NEW-9.step")
    assert tick() == []  # no product names it yet
    active(False)
    shutil.copyfile(SCREW, inbox / "screw.step")
    catalogue([["SCREW-1", "Screw", "screw.step"], ["NEW-9", "New", None]])  # an import of before, say
    assert tick() == [] and tick() == []
    assert "[upload_sensor] 'acme' is deactivated; 1 files wait" in capfd.readouterr().err
    assert sorted(p.name for p in inbox.iterdir()) == ["NEW-9.step", "screw.step"]
    active(True)
    [request] = tick()  # the two products, consecutive partitions: one batch
    assert (request.tags[RANGE[0]], request.tags[RANGE[1]]) == ("acme|NEW-9", "acme|SCREW-1")

    assert tick() == []


def test_a_tick_costs_the_same_statements_for_one_and_for_many_step_files(tick, inbox, catalogue, env):
    """No query per file: the products naming new STEP files come in one statement."""
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    catalogue([[f"P-{i}", f"Product {i}", f"p-{i}.step"] for i in range(300)])
    tick()  # dispatches the import: none of its files is there yet
    counts = []
    for files in (range(1), range(1, 300)):
        for i in files:
            shutil.copyfile(SCREW, inbox / f"p-{i}.step")
        event.listen(Engine, "before_cursor_execute", count)
        try:
            assert tick()
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        counts.append(len(statements))
        statements.clear()
    assert counts[0] == counts[1], counts


def test_a_burst_runs_in_batches_of_consecutive_products(tick, inbox, catalogue, instance):
    catalogue([[f"P-{i:03d}", f"Product {i}", f"p-{i}.step"] for i in range(120)])
    for i in range(120):
        shutil.copyfile(SCREW, inbox / f"p-{i}.step")
    requests = tick()
    assert [(r.tags.get(RANGE[0]), r.tags.get(RANGE[1])) for r in requests] == [
        ("acme|P-000", "acme|P-049"),
        ("acme|P-050", "acme|P-099"),
        ("acme|P-100", "acme|P-119"),
    ]
    assert tick() == []
    for i in (3, 4, 70):  # scattered changes: a run per range of consecutive products
        (inbox / f"p-{i}.step").write_bytes(SCREW.read_bytes() + b"\n/* revised */\n")
    requests = tick()
    assert [(r.partition_key, r.tags.get(RANGE[0]), r.tags.get(RANGE[1])) for r in requests] == [
        (None, "acme|P-003", "acme|P-004"),
        ("acme|P-070", None, None),
    ]


def test_a_material_change_requests_exactly_its_product(tick, inbox, catalogue):
    rows = [[f"P-{i}", f"Product {i}", f"p-{i}.step", "Cage=SCHAEFFLER_020201_Brass-Cage"] for i in range(3)]
    catalogue(rows)
    for i in range(3):
        shutil.copyfile(SCREW, inbox / f"p-{i}.step")
    tick()
    rows[1][3] = "Cage=SCHAEFFLER_030301_Polyamide-Cage"
    rows[2][1] = "Product 2, renamed"  # not a media input
    catalogue(rows)
    [request] = tick()
    assert request.partition_key == "acme|P-1"
    catalogue(rows)  # the same again: nothing
    assert tick() == []


def test_the_tick_of_a_lost_result_is_taken_up_again(tick, inbox):
    assert tick() == []
    shutil.copyfile(SCREW, inbox / "screw.step")
    lost = tick(keep_cursor=False)  # evaluated, but Dagster never stored the result
    again = tick()
    assert [r.run_key for r in again] == [r.run_key for r in lost] != []
    assert tick() == []


def test_one_tenants_bad_state_does_not_stop_the_others_and_is_retried(tick, catalogue, env):
    url = env["AUTOMAT_DATABASE_URL"]
    for tenant in ("acme", "beta"):
        catalogue([["SCREW-1", "Screw", "screw.step"]], tenant=tenant)
        (Path(env["AUTOMAT_UPLOADS_DIR"]) / tenant).mkdir(parents=True)
        shutil.copyfile(SCREW, Path(env["AUTOMAT_UPLOADS_DIR"]) / tenant / "screw.step")
    with session(url) as s, s.begin():  # a product row no partition key can name (written around the importer)
        s.execute(update(Product).where(Product.pim_id == "SCREW-1", Product.tenant_id == 1).values(key="bad|key"))
    assert [r.partition_key for r in tick()] == ["beta|SCREW-1"]
    with session(url) as s:
        [record] = s.scalars(select(CatalogImport).where(CatalogImport.tenant_id == 1)).all()
        assert not record.dispatched and "invalid_key" in record.dispatch_error
    assert tick() == []  # retried, still failing, the others unaffected
    with session(url) as s, s.begin():
        s.execute(update(Product).where(Product.key == "bad|key").values(key="SCREW-1"))
    assert [r.partition_key for r in tick()] == ["acme|SCREW-1"]
    with session(url) as s:
        assert s.execute(text("SELECT dispatched, dispatch_error FROM catalog_imports WHERE tenant_id = 1")).one() == (
            True,
            None,
        )


def test_a_tenant_whose_part_of_the_tick_fails_is_retried_and_the_others_go_on(tick, catalogue, env, monkeypatch):
    """Whatever fails in one tenant's part of a tick (here: reading what its inbox held) rolls back that
    part only: the other tenants' runs are requested, and its own files are new to the next tick."""
    for tenant in ("acme", "beta"):
        catalogue([["SCREW-1", "Screw", "screw.step"]], tenant=tenant)
        (Path(env["AUTOMAT_UPLOADS_DIR"]) / tenant).mkdir(parents=True)
        shutil.copyfile(SCREW, Path(env["AUTOMAT_UPLOADS_DIR"]) / tenant / "screw.step")
    inbox_state = repository.inbox_state

    def failing(s, tenant_id):
        if s.scalar(text("SELECT slug FROM tenants WHERE id = :t"), {"t": tenant_id}) == "acme":
            raise OSError("the inbox share went away")
        return inbox_state(s, tenant_id)

    monkeypatch.setattr(repository, "inbox_state", failing)
    assert [r.partition_key for r in tick()] == ["beta|SCREW-1"]
    monkeypatch.setattr(repository, "inbox_state", inbox_state)
    assert [r.partition_key for r in tick()] == ["acme|SCREW-1"]
    assert tick() == []


def test_a_ticks_unfiltered_query_sees_only_the_tenant_it_works_for(tick, catalogue, env, monkeypatch):
    """Row-level security binds the upload sensor (migration 0022): a query that forgets its tenant
    filter in a tenant's part of a tick sees that tenant's rows only, and no account secrets; in the
    part that crosses tenants it sees no tenant's rows."""
    for tenant in ("acme", "beta"):
        catalogue([[f"{tenant.upper()}-1", "Screw", "screw.step"]], tenant=tenant)
        (Path(env["AUTOMAT_UPLOADS_DIR"]) / tenant).mkdir(parents=True)
        shutil.copyfile(SCREW, Path(env["AUTOMAT_UPLOADS_DIR"]) / tenant / "screw.step")
    seen, next_sensor_tick, media_inputs = {}, repository.next_sensor_tick, repository.media_inputs

    def unfiltered(s) -> dict:
        found = {"user": s.scalar(text("SELECT current_user"))}
        for table, column in (("tenants", "slug"), ("products", "pim_id"), ("catalog_imports", "filename")):
            found[table] = sorted(s.scalars(text(f"SELECT {column} FROM {table}")))  # no tenant filter
        for table in ("inbox_files", "media_requests"):  # acme's part of the tick wrote some before beta's
            found[table] = s.scalar(text(f"SELECT count(*) FROM {table}"))
        with pytest.raises(ProgrammingError, match="permission denied for table users"), s.begin_nested():
            s.execute(text("SELECT password_hash FROM users"))
        return found

    def careless_tick(s):  # the part of the tick that crosses tenants
        seen["across"] = unfiltered(s)
        return next_sensor_tick(s)

    def careless_inputs(s, tenant):  # in each tenant's part of the tick
        seen[tenant.slug] = unfiltered(s)
        return media_inputs(s, tenant)

    monkeypatch.setattr(repository, "next_sensor_tick", careless_tick)
    monkeypatch.setattr(repository, "media_inputs", careless_inputs)
    assert sorted(r.partition_key for r in tick()) == ["acme|ACME-1", "beta|BETA-1"]
    nothing = {"tenants": [], "products": [], "catalog_imports": [], "inbox_files": 0, "media_requests": 0}
    assert seen == {
        "across": {"user": "automat_pipeline"} | nothing,
        "acme": {"user": "automat_pipeline", "tenants": ["acme"], "products": ["ACME-1"]}
        | {"catalog_imports": ["acme-list.xlsx"], "inbox_files": 1, "media_requests": 0},
        "beta": {"user": "automat_pipeline", "tenants": ["beta"], "products": ["BETA-1"]}
        | {"catalog_imports": ["beta-list.xlsx"], "inbox_files": 1, "media_requests": 0},
    }
    with session(env["AUTOMAT_DATABASE_URL"]) as s:  # what the tick wrote, each row its tenant's
        assert s.scalar(text("SELECT count(*) FROM inbox_files")) == 2
        join = "media_requests r JOIN products p ON (p.id, p.tenant_id) = (r.product_id, r.tenant_id)"
        assert s.scalar(text(f"SELECT count(*) FROM {join}")) == 2


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
