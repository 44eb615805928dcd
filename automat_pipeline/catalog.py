"""Read a tenant's Excel product list into validated rows and row-level rejections.

Pure: reads the workbook, writes nothing. The header row is found by its names (German or
English), anywhere in the first rows of any visible sheet.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from python_calamine import CalamineError, CalamineWorkbook

from automat_pipeline.errors import InputError
from automat_pipeline.partitions import KEY_PART

HEADER_SCAN_ROWS = 30
MAX_NAME = 500
SYNONYMS = {
    "pim_id": ["pimid", "pim", "artikelnummer", "sachnummer", "materialnumber", "partnumber", "productid", "sku"],
    "name": ["name", "bezeichnung", "produktname", "productname", "description", "beschreibung"],
    "category_key": ["category", "categorykey", "kategorie"],
    "lagertyp": ["lagertyp", "bearingtype"],
    "step_file": ["stepfile", "stepdatei", "stepfilename", "cadfile", "caddatei", "cad", "step"],
}
FIELD_OF = {synonym: field_name for field_name, names in SYNONYMS.items() for synonym in names}


@dataclass
class CatalogRow:
    row: int  # 1-based row number in the sheet, as Excel shows it
    pim_id: str
    name: str
    category_key: str | None = None
    lagertyp: str | None = None
    step_file: str | None = None
    attributes: dict = field(default_factory=dict)


@dataclass
class Rejection:
    row: int
    reason: str


@dataclass
class CatalogCheck:
    sheet: str
    header_row: int
    columns: dict[str, str]  # canonical field -> header as written
    accepted: list[CatalogRow]
    rejected: list[Rejection]


def normalize_header(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.replace("\xa0", " ").casefold())


def cell_text(value) -> str:
    """A cell as the text a person reads: 6201.0 → '6201', dates ISO, spaces trimmed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value).replace("\xa0", " ").strip()


def read_catalog(path: Path) -> CatalogCheck:
    path = Path(path)
    rows, sheet, header_row, columns = _find_table(path)
    accepted: list[CatalogRow] = []
    rejected: list[Rejection] = []
    first_row_of: dict[str, int] = {}
    for offset, raw in enumerate(rows[header_row + 1 :], start=header_row + 2):
        values = {header: cell_text(raw[i]) if i < len(raw) else "" for i, header in enumerate(rows[header_row])}
        if not any(values.values()):
            continue
        mapped = {f: values.get(h, "") for f, h in columns.items()}
        reason = _problem(mapped, first_row_of)
        if reason:
            rejected.append(Rejection(offset, reason))
            continue
        first_row_of[mapped["pim_id"]] = offset
        attributes = {h: v for h, v in values.items() if h and h not in columns.values() and v}
        accepted.append(
            CatalogRow(
                row=offset,
                pim_id=mapped["pim_id"],
                name=mapped["name"],
                category_key=mapped.get("category_key") or None,
                lagertyp=mapped.get("lagertyp") or None,
                step_file=mapped.get("step_file") or None,
                attributes=attributes,
            )
        )
    if not accepted and not rejected:
        raise InputError("no_data_rows", f"{path.name}: sheet {sheet!r} has a header but no data rows")
    return CatalogCheck(sheet, header_row + 1, columns, accepted, rejected)


def _problem(mapped: dict[str, str], first_row_of: dict[str, int]) -> str | None:
    pim_id, name, step_file = mapped["pim_id"], mapped["name"], mapped.get("step_file", "")
    if not pim_id:
        return "missing PIM-ID"
    if not KEY_PART.fullmatch(pim_id):
        return f"PIM-ID {pim_id!r} has characters outside A-Z a-z 0-9 . _ - (or is over 64 long)"
    if pim_id in first_row_of:
        return f"duplicate PIM-ID {pim_id!r} (first in row {first_row_of[pim_id]})"
    if not name:
        return "missing name"
    if len(name) > MAX_NAME:
        return f"name is {len(name)} characters, over {MAX_NAME}"
    if step_file and ("/" in step_file or "\\" in step_file):
        return f"STEP file {step_file!r} must be a bare file name, without folders"
    return None


def _find_table(path: Path) -> tuple[list[list], str, int, dict[str, str]]:
    """The first visible sheet with a header row naming at least PIM-ID and name."""
    if path.suffix.lower() == ".xls":
        raise InputError("legacy_xls", f"{path.name} is a legacy .xls workbook; save it as .xlsx")
    if not zipfile.is_zipfile(path):
        raise InputError("not_a_workbook", f"{path.name} is not an .xlsx workbook (not a zip container)")
    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except CalamineError as error:
        raise InputError("unreadable_workbook", f"{path.name}: {error}") from error
    seen: list[str] = []
    for meta in workbook.sheets_metadata:
        if str(meta.visible).lower().split(".")[-1] != "visible" or str(meta.typ).lower().split(".")[-1] != "worksheet":
            continue
        rows = workbook.get_sheet_by_name(meta.name).to_python(skip_empty_area=False)
        for index, row in enumerate(rows[:HEADER_SCAN_ROWS]):
            headers = [cell_text(c) for c in row]
            columns: dict[str, str] = {}
            for header in headers:
                canonical = FIELD_OF.get(normalize_header(header))
                if canonical and canonical not in columns:
                    columns[canonical] = header
            if {"pim_id", "name"} <= columns.keys():
                rows[index] = headers
                return rows, meta.name, index, columns
            seen.extend(h for h in headers if h)
    found = ", ".join(dict.fromkeys(seen)) or "none"
    raise InputError("no_header", f"{path.name}: no sheet has a header with PIM-ID and name columns (headers found: {found[:300]})")
