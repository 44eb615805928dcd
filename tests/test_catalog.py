from pathlib import Path

import pytest
from openpyxl import Workbook

from automat_pipeline.catalog import read_catalog
from automat_pipeline.errors import InputError
from conftest import FIXTURES


def workbook(path: Path, rows: list[list], title_rows: int = 0, hidden_first: bool = False) -> Path:
    wb = Workbook()
    sheet = wb.active
    if hidden_first:
        sheet.title = "Intern"
        sheet.append(["PIM-ID", "Name"])
        sheet.append(["HIDDEN-1", "never read"])
        sheet.sheet_state = "hidden"
        sheet = wb.create_sheet("Produkte")
    for _ in range(title_rows):
        sheet.append(["Produktliste Wälzlager 2026"])
    for row in rows:
        sheet.append(row)
    wb.save(path)
    return path


def test_german_headers_below_a_title_row(tmp_path):
    path = workbook(tmp_path / "liste.xlsx", [
        ["Artikelnummer", " Bezeichnung ", "Lagertyp", "STEP-Datei", "Farbe"],
        [6204, "Rillenkugellager\xa06204", "Rillenkugellager", "6204.step", "silber"],
        ["NU204", "Zylinderrollenlager", None, None, None],
    ], title_rows=2)
    check = read_catalog(path)
    assert (check.sheet, check.header_row) == ("Sheet", 3)
    assert [(r.row, r.pim_id, r.name) for r in check.accepted] == [
        (4, "6204", "Rillenkugellager 6204"), (5, "NU204", "Zylinderrollenlager")]
    assert check.accepted[0].step_file == "6204.step"
    assert check.accepted[0].lagertyp == "Rillenkugellager"
    assert check.accepted[0].attributes == {"Farbe": "silber"}
    assert check.rejected == []


def test_every_bad_row_is_rejected_with_its_reason(tmp_path):
    path = workbook(tmp_path / "list.xlsx", [
        ["Part number", "Description", "CAD file"],
        ["A-1", "first", None],
        [None, "no id", None],
        ["A-1", "again", None],
        ["B 2", "space in id", None],
        ["C-3", None, None],
        ["D-4", "folder", "sub/d4.step"],
        [None, None, None],
        ["E-5", "fine", "e5.stp"],
    ])
    check = read_catalog(path)
    assert [r.pim_id for r in check.accepted] == ["A-1", "E-5"]
    assert [(r.row, r.reason.split(" ")[0]) for r in check.rejected] == [
        (3, "missing"), (4, "duplicate"), (5, "PIM-ID"), (6, "missing"), (7, "STEP")]
    assert "first in row 2" in check.rejected[1].reason


def test_hidden_sheets_are_skipped(tmp_path):
    path = workbook(tmp_path / "h.xlsx", [["SKU", "Product name"], ["V-1", "visible"]], hidden_first=True)
    check = read_catalog(path)
    assert check.sheet == "Produkte"
    assert [r.pim_id for r in check.accepted] == ["V-1"]


@pytest.mark.parametrize("name,content,error_class", [
    ("old.xls", b"\xd0\xcf\x11\xe0legacy", "legacy_xls"),
    ("text.xlsx", b"PIM-ID;Name\n1;x\n", "not_a_workbook"),
])
def test_files_that_are_not_workbooks(tmp_path, name, content, error_class):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as error:
        read_catalog(tmp_path / name)
    assert error.value.error_class == error_class


def test_no_header_lists_what_it_found(tmp_path):
    path = workbook(tmp_path / "x.xlsx", [["Foo", "Bar"], [1, 2]])
    with pytest.raises(InputError, match="headers found: Foo, Bar") as error:
        read_catalog(path)
    assert error.value.error_class == "no_header"


def test_header_without_rows(tmp_path):
    with pytest.raises(InputError) as error:
        read_catalog(workbook(tmp_path / "e.xlsx", [["PIM-ID", "Name"]]))
    assert error.value.error_class == "no_data_rows"


@pytest.mark.parametrize("path", sorted((FIXTURES / "xlsx").rglob("*.xlsx")), ids=lambda p: p.name)
def test_real_workbooks_are_read_or_rejected_with_a_reason(path):
    """None of the public workbooks is a product list: each must fail cleanly, naming its headers."""
    with pytest.raises(InputError) as error:
        read_catalog(path)
    assert error.value.error_class == "no_header"
    assert path.name in error.value.reason
