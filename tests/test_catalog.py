"""Reading product lists: pure, no database."""

import datetime
import io
import random
import zipfile
from pathlib import Path

import pytest
from conftest import FIXTURES
from openpyxl import Workbook
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from automat_pipeline.catalog import read_catalog
from automat_pipeline.errors import AutomatError
from automat_pipeline.tenant_settings import CatalogSettings, TenantSettings


def workbook(
    path: Path,
    rows: list[list],
    title_rows: int = 0,
    sheet_title: str = "Produkte",
    epoch=None,
    hidden: list[list] | None = None,
) -> Path:
    wb = Workbook()
    if epoch:
        wb.epoch = epoch
    sheet = wb.active
    sheet.title = sheet_title
    for _ in range(title_rows):
        sheet.append(["Produktliste Wälzlager 2026"])
    for row in rows:
        sheet.append(row)
    if hidden:
        extra = wb.create_sheet("Intern")
        for row in hidden:
            extra.append(row)
        extra.sheet_state = "hidden"
    wb.save(path)
    return path


def test_german_headers_below_a_title_row(tmp_path):
    path = workbook(
        tmp_path / "liste.xlsx",
        [
            ["Artikelnummer", " Bezeichnung ", "Lagertyp", "STEP-Datei", "Farbe", None],
            [6204, "Rillenkugellager\xa0 6204 ", "Rillenkugellager", "6204.step", "silber", None],
            [None, None, None, None, None, None],
            ["6201-2RS/C3", "Rillenkugellager 6201", None, None, None, None],
        ],
        title_rows=2,
    )
    check = read_catalog(path)
    assert [(t.sheet, t.header_row) for t in check.tables] == [("Produkte", 3)]
    assert [(r.row, r.pim_id, r.key, r.name) for r in check.accepted] == [
        (4, "6204", "6204", "Rillenkugellager 6204"),
        (6, "6201-2RS/C3", "6201-2RS_C3", "Rillenkugellager 6201"),
    ]
    first = check.accepted[0]
    assert (first.step_file, first.lagertyp, first.attributes) == ("6204.step", "Rillenkugellager", {"Farbe": "silber"})
    assert check.rejected == []


def test_every_bad_row_is_rejected_with_its_reason(tmp_path):
    path = workbook(
        tmp_path / "list.xlsx",
        [
            ["Part number", "Description", "CAD file", "Category", "Materials"],
            ["A-1", "first", None, "ball", None],
            [None, "no id", None, None, None],
            ["A-1", "again", None, None, None],
            ["C-3", None, None, None, None],
            ["D-4", "folder", "sub/d4.step", None, None],
            ["E-5", "x" * 501, None, None, None],
            ["F-6", "unknown category", None, "spaceship", None],
            ["G-7", "bad materials", None, None, "Outer_Ring=Steel; Cage"],
            ["H 8", "key clash", None, None, None],
            ["H/8", "key clash", None, None, None],
            ["OK-9", "fine", "ok9.stp", "roller", "Outer_Ring = Steel ; Cage=Brass;"],
        ],
    )
    check = read_catalog(path, CatalogSettings(categories=["ball", "roller"]))
    assert [r.pim_id for r in check.accepted] == ["OK-9"]
    assert check.accepted[0].materials == {"Outer_Ring": "Steel", "Cage": "Brass"}
    reasons = {r.row: r.reason for r in check.rejected}
    assert reasons[2] == "duplicate PIM-ID 'A-1' (also in row Produkte!4)"  # both rows reported
    assert reasons[4] == "duplicate PIM-ID 'A-1' (also in row Produkte!2)"
    assert reasons[3] == "missing PIM-ID"
    assert reasons[5] == "missing name for PIM-ID 'C-3'"
    assert reasons[6].startswith("STEP file 'sub/d4.step' must be a bare file name")
    assert reasons[7] == "name is 501 characters, over 500"
    assert reasons[8] == "unknown category 'spaceship'"
    assert reasons[9].startswith("bad material syntax 'Cage'")
    assert reasons[10] == "duplicate product key 'H_8' (also in row Produkte!11)"
    assert reasons[11] == "duplicate product key 'H_8' (also in row Produkte!10)"


def test_material_columns_per_part(tmp_path):
    path = workbook(
        tmp_path / "m.xlsx",
        [
            ["PIM-ID", "Name", "Material: Outer_Ring", "Werkstoff: Cage", "Gewicht"],
            ["P-1", "one", "Steel-Bare", "Brass", 0.11],
        ],
    )
    [row] = read_catalog(path).accepted
    assert row.materials == {"Outer_Ring": "Steel-Bare", "Cage": "Brass"}
    assert row.attributes == {"Gewicht": "0.11"}


@pytest.mark.parametrize("epoch", [None, CALENDAR_MAC_1904], ids=["1900", "1904"])
def test_merged_cells_dates_and_numbers_as_text(tmp_path, epoch):
    wb = Workbook()
    if epoch:
        wb.epoch = epoch
    sheet = wb.active
    for row in (
        ["PIM-ID", "Name", "Kategorie", "Freigabe"],
        ["'0042", "first", "ball", datetime.date(2024, 5, 17)],
        ["0043", "second", None, None],
    ):
        sheet.append(row)
    sheet["A2"] = "0042"  # a number stored as text keeps its leading zeros
    sheet.merge_cells("C2:C3")
    wb.save(tmp_path / "d.xlsx")
    check = read_catalog(tmp_path / "d.xlsx")
    assert [(r.pim_id, r.category_key) for r in check.accepted] == [("0042", "ball"), ("0043", "ball")]
    assert check.accepted[0].attributes == {"Freigabe": "2024-05-17"}


def test_hidden_sheets_are_skipped_unless_configured(tmp_path):
    path = workbook(
        tmp_path / "h.xlsx",
        [["SKU", "Product name"], ["V-1", "visible"]],
        hidden=[["PIM-ID", "Name"], ["H-1", "hidden"]],
    )
    assert [r.pim_id for r in read_catalog(path).accepted] == ["V-1"]
    assert [r.pim_id for r in read_catalog(path, CatalogSettings(include_hidden=True)).accepted] == ["V-1", "H-1"]
    assert [r.pim_id for r in read_catalog(path, CatalogSettings(sheets=["Intern"])).accepted] == ["H-1"]


def test_tenant_column_overrides(tmp_path):
    path = workbook(tmp_path / "o.xlsx", [["Nr.", "Text"], ["N-1", "renamed headers"]])
    settings = TenantSettings.of({"catalog": {"columns": {"Nr.": "pim_id", "Text": "name"}}}).catalog
    assert [r.pim_id for r in read_catalog(path, settings).accepted] == ["N-1"]
    with pytest.raises(AutomatError, match=r"invalid_settings: catalog\.columns\.Nr\..*'pim_id', 'name'"):
        TenantSettings.of({"catalog": {"columns": {"Nr.": "colour"}}})
    with pytest.raises(AutomatError, match=r"invalid_settings: catalog\.shets: Extra inputs are not permitted"):
        TenantSettings.of({"catalog": {"shets": ["x"]}})


def zipped(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def broken_deflate() -> bytes:
    """A zip whose workbook member's deflate stream is broken (a block of the reserved type 11):
    zlib's own error, not a BadZipFile (a bit flip in a real product list did this)."""
    data = bytearray(zipped({"xl/workbook.xml": b"<w/>" * 1000}))
    name_length, extra_length = int.from_bytes(data[26:28], "little"), int.from_bytes(data[28:30], "little")
    data[30 + name_length + extra_length] = 0b111  # BFINAL 1, BTYPE 11
    return bytes(data)


@pytest.mark.parametrize(
    "name,content,error_class",
    [
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "legacy_xls"),
        ("old.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "legacy_xls"),
        (
            "secret.xlsx",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100) + "EncryptionInfo".encode("utf-16-le"),
            "encrypted_workbook",
        ),
        ("text.xlsx", b"PIM-ID;Name\n1;x\n", "not_a_workbook"),
        ("other.xlsx", zipped({"word/document.xml": b"<w/>"}), "not_a_workbook"),
        ("cut.xlsx", zipped({"xl/workbook.xml": random.Random(1).randbytes(100_000)})[:50_000], "corrupt_zip"),
        ("flipped.xlsx", broken_deflate(), "corrupt_zip"),
        ("junk.xlsx", zipped({"xl/workbook.xml": b"<not-a-workbook"}), "unreadable_workbook"),
        ("bomb.xlsx", zipped({"xl/workbook.xml": b"<w/>", "xl/big.xml": bytes(3 << 20)}), "zip_bomb"),
    ],
)
def test_containers_refused_before_parsing(tmp_path, name, content, error_class):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(AutomatError) as error:
        read_catalog(tmp_path / name, CatalogSettings(max_uncompressed_bytes=2 << 20))
    assert error.value.error_class == error_class
    assert name in error.value.reason


def test_zip_bomb_with_lying_sizes(tmp_path):
    """Headers that claim 100 bytes for a 3 MiB member: only inflating it reveals the size."""
    data = bytearray(zipped({"xl/workbook.xml": b"<w/>", "xl/big.xml": bytes(3 << 20)}))
    for signature, size_offset, name_offset in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while at != -1:
            if data[at + name_offset : at + name_offset + 10] == b"xl/big.xml":
                data[at + size_offset : at + size_offset + 4] = (100).to_bytes(4, "little")
            at = data.find(signature, at + 4)
    (tmp_path / "liar.xlsx").write_bytes(bytes(data))
    with pytest.raises(AutomatError) as error:
        read_catalog(tmp_path / "liar.xlsx", CatalogSettings(max_uncompressed_bytes=2 << 20))
    assert error.value.error_class in {"zip_bomb", "corrupt_zip"}


def test_too_many_rows(tmp_path):
    path = workbook(tmp_path / "big.xlsx", [["PIM-ID", "Name"]] + [[f"P{i}", "x"] for i in range(11)])
    with pytest.raises(AutomatError, match="11 rows, over the limit of 10") as error:
        read_catalog(path, CatalogSettings(max_rows=10))
    assert error.value.error_class == "too_many_rows"


def test_no_header_lists_what_it_found(tmp_path):
    path = workbook(tmp_path / "x.xlsx", [["Foo", "Bar"], [1, 2]])
    with pytest.raises(AutomatError, match="headers found: 'Produkte': Foo, Bar") as error:
        read_catalog(path)
    assert error.value.error_class == "no_header"


def test_header_without_rows(tmp_path):
    with pytest.raises(AutomatError) as error:
        read_catalog(workbook(tmp_path / "e.xlsx", [["PIM-ID", "Name"]]))
    assert error.value.error_class == "no_data_rows"


REAL_WORKBOOKS = {
    # None of the public workbooks has a PIM-ID column; the BOM's headers are Part Name / Part Link / ...
    "BOM.xlsx": "Part Name, Part Link, Part Quantity",
    "issue_174.xlsx": "Your Ref #, Contact Name",  # whole grid declared as used: must stay cheap
    "issue_261.xlsx": "String Value",
    "any_sheets.xlsx": "'Visible'",  # hidden sheets and the chart sheet are not read
    "header-row.xlsx": "Column A, Column B, Column C",  # header on row 5
}


@pytest.mark.parametrize("path", sorted((FIXTURES / "xlsx").rglob("*.xlsx")), ids=lambda p: p.name)
def test_real_workbooks_are_refused_with_the_headers_they_have(path):
    with pytest.raises(AutomatError) as error:
        read_catalog(path)
    assert error.value.error_class == "no_header"
    assert REAL_WORKBOOKS[path.name] in error.value.reason


def test_the_bill_of_materials_imports_with_a_column_override():
    path = FIXTURES / "xlsx" / "ckraft-qdd" / "BOM.xlsx"
    settings = CatalogSettings(columns={"Part Name": ["pim_id", "name"]})
    check = read_catalog(path, settings)
    assert check.tables[0].header_row == 2 and len(check.accepted) >= 15
    bearing = next(r for r in check.accepted if r.pim_id == "6805 Bearing")
    assert bearing.key == "6805_Bearing" and bearing.attributes["Part Quantity"] == "2"
