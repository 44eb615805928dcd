"""Read a tenant's Excel product list into validated rows and row-level rejections.

Pure: reads the workbook, writes nothing. The container is checked before any parser sees it
(legacy .xls, encrypted, corrupt or zip-bomb files are refused by name). Header rows are found by
their names, German or English, anywhere in the first rows of every visible sheet.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import get_args

from python_calamine import CalamineError, CalamineWorkbook

from automat_pipeline.errors import AutomatError
from automat_pipeline.inbox import file_name
from automat_pipeline.keys import product_key
from automat_pipeline.tenant_settings import CatalogField, CatalogSettings

HEADER_SCAN_ROWS = 30
MAX_NAME = 500
REQUIRED = ("pim_id", "name")
SYNONYMS = {
    "pim_id": [
        "pimid",
        "pim",
        "artikelnummer",
        "artikelnr",
        "sachnummer",
        "materialnumber",
        "materialnummer",
        "partnumber",
        "partno",
        "productid",
        "produktid",
        "sku",
        "itemnumber",
    ],
    "name": ["name", "bezeichnung", "produktname", "productname", "description", "beschreibung", "title"],
    "category_key": ["category", "categorykey", "kategorie", "produktkategorie", "productcategory"],
    "lagertyp": ["lagertyp", "bearingtype", "lagerart"],
    "step_file": ["stepfile", "stepdatei", "stepfilename", "cadfile", "caddatei", "cad", "step"],
    "materials": [
        "materials",
        "material",
        "materialien",
        "werkstoff",
        "werkstoffe",
        "materialassignments",
        "materialzuordnung",
    ],
}
FIELDS = get_args(CatalogField)
assert set(FIELDS) == set(SYNONYMS), "every field a column can fill has its header names"
UNUSUAL = re.compile(r"\s\s|[^\S ]|\xa0|\x00")  # odd blanks, or NUL (Excel's _x0000_), which PostgreSQL cannot hold
PER_PART_MATERIAL = re.compile(r"^\s*(?:material|werkstoff)\s*:\s*(.+?)\s*$", re.I)
CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE container: legacy .xls, or an encrypted .xlsx
ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")


@dataclass
class CatalogRow:
    sheet: str
    row: int  # 1-based, as Excel shows it
    pim_id: str
    name: str
    key: str = ""
    category_key: str | None = None
    lagertyp: str | None = None
    step_file: str | None = None
    materials: dict[str, str] = field(default_factory=dict)  # part name → material name
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Rejection:
    sheet: str
    row: int
    reason: str


@dataclass
class Table:
    """One sheet's product table: its header row, the column each field came from, its raw rows."""

    sheet: str
    header_row: int  # 1-based
    headers: list[str]
    columns: dict[str, str]  # field → header as written
    rows: list[tuple[int, list]]  # (1-based row number, cells as read) of every non-empty data row


@dataclass
class CatalogCheck:
    tables: list[Table]
    accepted: list[CatalogRow]
    rejected: list[Rejection]


def normalize_header(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.replace("\xa0", " ").casefold())


def cell_text(value) -> str:
    """A cell as the text a person reads: 6201.0 → '6201', dates ISO, runs of spaces (NBSP too) as one,
    NUL as U+FFFD."""
    if value.__class__ is str:  # the common case, kept cheap: 100k rows × 10 columns
        text = value.strip()
        if not UNUSUAL.search(text):
            return text
        return " ".join(text.replace("\x00", "\ufffd").replace("\xa0", " ").split())
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return " ".join(str(value).replace("\xa0", " ").split())


def check_container(path: Path, max_uncompressed_bytes: int) -> None:
    """Refuse what is not a readable .xlsx before a parser touches it (sizes checked before inflating)."""
    with path.open("rb") as f:
        head = f.read(8)
        if head == CFB_MAGIC:
            if ENCRYPTION_INFO in f.read(8 << 20):
                raise AutomatError(
                    "encrypted_workbook", f"{path.name} is password-protected; save it without a password"
                )
            raise AutomatError("legacy_xls", f"{path.name} is a legacy .xls (Excel 97-2003) workbook; save it as .xlsx")
    if not head.startswith(b"PK\x03\x04"):
        kind = "legacy_xls" if path.suffix.lower() == ".xls" else "not_a_workbook"
        raise AutomatError(kind, f"{path.name} is not an .xlsx workbook (no zip container)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            declared = sum(m.file_size for m in members)
            if declared > max_uncompressed_bytes:
                raise AutomatError(
                    "zip_bomb",
                    f"{path.name} declares {declared} bytes uncompressed, over the {max_uncompressed_bytes} limit",
                )
            if "xl/workbook.xml" not in {m.filename for m in members}:
                raise AutomatError("not_a_workbook", f"{path.name} is a zip file but not an Excel workbook")
            inflated = 0
            for member in members:  # declared sizes can lie: count what actually inflates
                with archive.open(member) as stream:
                    while block := stream.read(1 << 20):
                        inflated += len(block)
                        if inflated > max_uncompressed_bytes:
                            raise AutomatError(
                                "zip_bomb", f"{path.name} inflates past the {max_uncompressed_bytes}-byte limit"
                            )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as error:
        raise AutomatError("corrupt_zip", f"{path.name} is a damaged zip container: {error}") from error


def read_tables(path: Path, settings: CatalogSettings) -> list[Table]:
    """The product tables of a workbook, after the container checks; rows as read, not yet validated."""
    check_container(path, settings.max_uncompressed_bytes)
    return _find_tables(path, settings)


def read_catalog(path: Path, settings: CatalogSettings | None = None) -> CatalogCheck:
    path, settings = Path(path), settings or CatalogSettings()
    tables = read_tables(path, settings)
    total = sum(len(t.rows) for t in tables)
    if total > settings.max_rows:
        raise AutomatError("too_many_rows", f"{path.name} has {total} rows, over the limit of {settings.max_rows}")
    accepted, rejected = [], []
    for table in tables:
        layout = _Layout.of(table)
        for number, raw in table.rows:
            row = _parse_row(table, layout, raw, number, settings, rejected)
            if row:
                accepted.append(row)
    accepted = _reject_duplicates(accepted, rejected)
    if not accepted and not rejected:
        raise AutomatError(
            "no_data_rows", f"{path.name}: {', '.join(repr(t.sheet) for t in tables)} has a header but no data rows"
        )
    rejected.sort(key=lambda r: ([t.sheet for t in tables].index(r.sheet), r.row))
    return CatalogCheck(tables, accepted, rejected)


def _field_map(settings: CatalogSettings) -> dict[str, list[str]]:
    mapping = {synonym: [name] for name, synonyms in SYNONYMS.items() for synonym in synonyms}
    for header, target in settings.columns.items():
        mapping[normalize_header(header)] = [target] if isinstance(target, str) else list(target)
    return mapping


def _find_tables(path: Path, settings: CatalogSettings) -> list[Table]:
    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except (CalamineError, ValueError) as error:
        raise AutomatError("unreadable_workbook", f"{path.name}: {error}") from error
    field_map, tables, seen = _field_map(settings), [], {}
    for meta in workbook.sheets_metadata:
        visible = str(meta.visible).endswith(".Visible")
        listed = settings.sheets is None or meta.name in settings.sheets
        if not str(meta.typ).endswith("WorkSheet") or not listed:
            continue
        if not visible and not settings.include_hidden and settings.sheets is None:
            continue
        sheet = workbook.get_sheet_by_name(meta.name)
        rows = sheet.to_python(skip_empty_area=False)
        _fill_merged(rows, sheet.merged_cell_ranges or [])
        best: list[str] = []
        for index, row in enumerate(rows[:HEADER_SCAN_ROWS]):
            headers = [cell_text(c) for c in row]
            columns: dict[str, str] = {}
            for header in headers:
                for name in field_map.get(normalize_header(header), []):
                    columns.setdefault(name, header)
            if all(name in columns for name in REQUIRED):
                data = [
                    (number, r)
                    for number, r in enumerate(rows[index + 1 :], start=index + 2)
                    if any(c not in ("", None) for c in r)
                ]
                tables.append(Table(meta.name, index + 1, headers, columns, data))
                break
            if len(set(filter(None, headers))) > len(set(filter(None, best))):
                best = headers
        else:
            seen[meta.name] = [h for h in best if h]
    if not tables:
        found = "; ".join(f"{sheet!r}: {', '.join(h)[:200] or '(empty)'}" for sheet, h in seen.items())
        raise AutomatError(
            "no_header",
            f"{path.name}: no sheet has a header naming a PIM-ID and a name column "
            f"(headers found: {found or 'no readable sheet'})",
        )
    return tables


def _fill_merged(rows: list[list], ranges: list) -> None:
    """Give every cell of a merged range the value of its top-left cell (what a person sees)."""
    for (r0, c0), (r1, c1) in ranges:
        if r0 >= len(rows) or c0 >= len(rows[r0]):
            continue
        value = rows[r0][c0]
        for r in range(r0, min(r1, len(rows) - 1) + 1):
            for c in range(c0, min(c1, len(rows[r]) - 1) + 1):
                rows[r][c] = value


@dataclass
class _Layout:
    """Which column holds what, worked out once per table instead of once per row."""

    fields: dict[str, int]
    materials: list[tuple[int, str]]  # "Material: <part>" columns
    attributes: list[tuple[int, str]]

    @classmethod
    def of(cls, table: Table) -> _Layout:
        fields = {name: table.headers.index(header) for name, header in table.columns.items()}
        materials, attributes = [], []
        for index, header in enumerate(table.headers):
            if header and index not in fields.values():
                per_part = PER_PART_MATERIAL.match(header)
                (materials.append((index, per_part.group(1))) if per_part else attributes.append((index, header)))
        return cls(fields, materials, attributes)


def _parse_row(
    table: Table, layout: _Layout, raw: list, row: int, settings: CatalogSettings, rejected: list[Rejection]
) -> CatalogRow | None:
    def cell(index: int | None) -> str:
        return cell_text(raw[index]) if index is not None and index < len(raw) else ""

    def reject(reason: str) -> None:
        rejected.append(Rejection(table.sheet, row, reason))

    fields = layout.fields
    pim_id, name = cell(fields["pim_id"]), cell(fields["name"])
    step_file, category = cell(fields.get("step_file")), cell(fields.get("category_key"))
    if not pim_id:
        return reject("missing PIM-ID")
    if len(pim_id) > 200:
        return reject(f"PIM-ID is {len(pim_id)} characters, over 200")
    if not name:
        return reject(f"missing name for PIM-ID {pim_id!r}")
    if len(name) > MAX_NAME:
        return reject(f"name is {len(name)} characters, over {MAX_NAME}")
    if category and settings.categories is not None and category not in settings.categories:
        return reject(f"unknown category {category!r}")
    if step_file and ("/" in step_file or "\\" in step_file):
        return reject(f"STEP file {step_file!r} must be a bare file name, without folders")
    step_file = step_file and file_name(step_file)  # as the upload API names the file it stores
    materials: dict[str, str] = {}
    for item in cell(fields.get("materials")).split(";"):
        if item.strip():
            part, eq, material = (s.strip() for s in item.partition("="))
            if not eq or not part or not material or "=" in material:
                return reject(f"bad material syntax {item.strip()!r}: expected part=material; part=material")
            materials[part] = material
    for index, part in layout.materials:
        if value := cell(index):
            materials[part] = value
    attributes = {header: value for index, header in layout.attributes if (value := cell(index))}
    return CatalogRow(
        table.sheet,
        row,
        pim_id,
        name,
        product_key(pim_id),
        category or None,
        cell(fields.get("lagertyp")) or None,
        step_file or None,
        materials,
        attributes,
    )


def _reject_duplicates(rows: list[CatalogRow], rejected: list[Rejection]) -> list[CatalogRow]:
    """A PIM-ID (or product key) given twice is ambiguous: every row giving it is rejected."""
    if len({r.pim_id for r in rows}) == len({r.key for r in rows}) == len(rows):
        return rows
    where = defaultdict(list)
    for r in rows:
        where[("PIM-ID", r.pim_id)].append(r)
        where[("product key", r.key)].append(r)
    bad: dict[int, str] = {}
    for (what, value), group in where.items():
        if len(group) > 1:
            for r in group:
                others = ", ".join(f"{o.sheet}!{o.row}" for o in group if o is not r)
                bad.setdefault(id(r), f"duplicate {what} {value!r} (also in row {others})")
    rejected += [Rejection(r.sheet, r.row, bad[id(r)]) for r in rows if id(r) in bad]
    return [r for r in rows if id(r) not in bad]
