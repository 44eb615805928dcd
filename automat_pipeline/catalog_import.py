"""Import one workbook version into PostgreSQL: one transaction, recorded; then a downloadable report.

Rows (with their material assignments) go in through COPY into a temporary table and one
``INSERT … ON CONFLICT … WHERE … IS DISTINCT FROM`` statement, so unchanged products are not rewritten
and 100k rows cost seconds. Products that a new version of the same workbook no longer lists are
marked inactive, never deleted. The import records which products' media inputs (STEP file name,
material assignments) it changed, so that exactly those get their media re-made.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from automat_pipeline.catalog import CatalogCheck, CatalogRow, Rejection, read_catalog, read_tables
from automat_pipeline.db import repository
from automat_pipeline.db.models import CatalogImport, Product, Tenant
from automat_pipeline.errors import AutomatError
from automat_pipeline.inbox import sha256
from automat_pipeline.settings import deployment_limits
from automat_pipeline.tenant_settings import CatalogSettings, TenantSettings

PRODUCT_COLUMNS = ("pim_id", "key", "name", "category_key", "lagertyp", "step_filename", "materials", "attributes")


@dataclass
class ImportResult:
    import_id: int
    filename: str
    status: str  # "ok" | "failed"
    error: AutomatError | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def import_workbook(session: Session, tenant: Tenant, path: Path, trigger: str) -> ImportResult:
    """Read, validate and write one workbook in the caller's transaction; a bad file is recorded, not raised."""
    path, seconds = Path(path), {}
    digest = sha256(path)
    started = time.perf_counter()
    try:
        check = read_catalog(path, TenantSettings.of(tenant.settings).within(deployment_limits()).catalog)
    except AutomatError as error:
        record = _record(session, tenant, path.name, digest, trigger, "failed", error=str(error))
        repository.record_file(session, tenant.id, path, "catalog", digest, error=str(error))
        return ImportResult(record.id, path.name, "failed", error=error)
    seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    accepted = _reject_taken_keys(session, tenant.id, check)
    counts, outcomes = write_products(session, tenant.id, path.name, accepted)
    seconds["write"] = time.perf_counter() - started

    counts = {
        "rows": len(check.accepted) + len(check.rejected),
        "accepted": len(accepted),
        "rejected": len(check.rejected),
        **counts,
    }
    outcomes["rejected"] = [{"sheet": r.sheet, "row": r.row, "reason": r.reason} for r in check.rejected]
    record = _record(session, tenant, path.name, digest, trigger, "ok", counts=counts, outcomes=outcomes)
    repository.record_file(session, tenant.id, path, "catalog", digest)
    return ImportResult(
        record.id,
        path.name,
        "ok",
        counts=counts,
        rejected=check.rejected,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


# Existing products whose media inputs this import changes (the STEP file it names, its material
# assignments, or its coming back into the catalogue): with the created ones, those whose media the
# upload sensor requests (``repository.undispatched_imports``).
MEDIA_CHANGED = """
    SELECT i.pim_id FROM import_products i JOIN products p ON p.tenant_id = :tenant AND p.pim_id = i.pim_id
    WHERE (p.step_filename, p.materials, p.active) IS DISTINCT FROM (i.step_filename, i.materials, true)
"""
DEACTIVATE = """
    UPDATE products p SET active = false, updated_at = now()
    WHERE p.tenant_id = :tenant AND p.source_file = :source AND p.active
      AND NOT EXISTS (SELECT 1 FROM import_products i WHERE i.pim_id = p.pim_id)
    RETURNING p.pim_id
"""


def write_products(
    session: Session, tenant_id: int, source_file: str, rows: list[CatalogRow]
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Upsert ``rows`` as the full content of ``source_file``; return counts and the PIM-IDs per outcome."""
    session.execute(
        text(
            "CREATE TEMP TABLE import_products (pim_id text, key text, name text, category_key text, lagertyp text, "
            "step_filename text, materials jsonb, attributes jsonb) ON COMMIT DROP"
        )
    )
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor.copy(f"COPY import_products ({', '.join(PRODUCT_COLUMNS)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(
                (
                    r.pim_id,
                    r.key,
                    r.name,
                    r.category_key,
                    r.lagertyp,
                    r.step_file,
                    json.dumps(r.materials),
                    json.dumps(r.attributes),
                )
            )
    # The index keeps the deactivation's anti-join linear whatever plan it gets: for a tenant the
    # statistics have not seen, the planner expects 1 product and picks a nested loop, which without
    # it scans the whole temporary table once per product (minutes at 100k rows).
    session.execute(text("CREATE INDEX ON import_products (pim_id)"))
    session.execute(text("ANALYZE import_products"))
    params = {"tenant": tenant_id, "source": source_file}
    media_changed = session.scalars(text(MEDIA_CHANGED), {"tenant": tenant_id}).all()
    written = session.execute(
        text("""
        INSERT INTO products AS p (tenant_id, pim_id, key, name, category_key, lagertyp, step_filename,
                                   materials, attributes, source_file, active)
        SELECT :tenant, pim_id, key, name, category_key, lagertyp, step_filename, materials, attributes, :source,
               true
        FROM import_products
        ON CONFLICT (tenant_id, pim_id) DO UPDATE SET
            key = EXCLUDED.key, name = EXCLUDED.name, category_key = EXCLUDED.category_key,
            lagertyp = EXCLUDED.lagertyp, step_filename = EXCLUDED.step_filename, materials = EXCLUDED.materials,
            attributes = EXCLUDED.attributes, source_file = EXCLUDED.source_file, active = true,
            updated_at = now()
        WHERE (p.key, p.name, p.category_key, p.lagertyp, p.step_filename, p.materials, p.attributes,
               p.source_file, p.active)
              IS DISTINCT FROM (EXCLUDED.key, EXCLUDED.name, EXCLUDED.category_key, EXCLUDED.lagertyp,
                                EXCLUDED.step_filename, EXCLUDED.materials, EXCLUDED.attributes,
                                EXCLUDED.source_file, true)
        RETURNING p.pim_id, (xmax = 0) AS created
    """),
        params,
    ).all()
    deactivated = session.scalars(text(DEACTIVATE), params).all()
    created = [pim for pim, is_new in written if is_new]
    updated = [pim for pim, is_new in written if not is_new]
    counts = {
        "created": len(created),
        "updated": len(updated),
        "unchanged": len(rows) - len(written),
        "deactivated": len(deactivated),
    }
    outcomes = {"created": created, "updated": updated, "deactivated": list(deactivated)}
    return counts, outcomes | {"media_changed": list(media_changed)}


def _reject_taken_keys(session: Session, tenant_id: int, check: CatalogCheck) -> list[CatalogRow]:
    """A product key already owned by another PIM-ID of this tenant would collide: reject that row."""
    owners = dict(session.execute(select(Product.key, Product.pim_id).where(Product.tenant_id == tenant_id)).all())
    accepted = []
    for row in check.accepted:
        owner = owners.get(row.key, row.pim_id)
        if owner != row.pim_id:
            check.rejected.append(
                Rejection(
                    row.sheet,
                    row.row,
                    f"PIM-ID {row.pim_id!r} maps to product key {row.key!r}, which PIM-ID {owner!r} already has",
                )
            )
        else:
            accepted.append(row)
    return accepted


def write_report(workbook: Path, settings: CatalogSettings, rejected: list[dict], out: Path) -> Path:
    """The workbook's own rows, per sheet, with a status and a reason column (openpyxl, streaming).

    Written after the import, not inside it: openpyxl writes ~50k cells/s, 20 s for 100k rows.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    reasons = {(r["sheet"], r["row"]): r["reason"] for r in rejected}
    report = Workbook(write_only=True)
    for table in read_tables(workbook, settings):
        sheet = report.create_sheet(table.sheet[:31])
        sheet.append(["Row", *(_text(sheet, h) for h in table.headers), "Status", "Reason"])
        for number, raw in table.rows:
            reason = reasons.get((table.sheet, number))
            sheet.append([number, *(_text(sheet, v) for v in raw), "rejected" if reason else "imported", reason or ""])
    report.save(out)
    return out


def _text(sheet, value):
    """A cell of the client's workbook as it was: openpyxl would turn text starting with "=" into a
    live formula (a link or a command the product manager's spreadsheet would run), and refuses the
    control characters a cell can spell (_x0001_): those become U+FFFD."""
    if value.__class__ is not str:
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    if value.startswith("="):
        cell = WriteOnlyCell(sheet, value)
        cell.data_type = "s"
        return cell
    return value


def attach_report(session: Session, record: CatalogImport, workbook: Path, reports_dir: Path) -> Path:
    """Write the report of ``record`` (an import of ``workbook``) and remember where it is."""
    tenant = session.get(Tenant, record.tenant_id)
    out = Path(reports_dir) / f"{Path(record.filename).stem}-import-{record.id}.xlsx"
    write_report(workbook, TenantSettings.of(tenant.settings).catalog, record.outcomes.get("rejected", []), out)
    record.report_path = str(out)
    return out


def imports_without_report(session: Session, tenant_id: int) -> list[CatalogImport]:
    """The latest successful import of each workbook, where it has no report yet."""
    latest = session.scalars(
        select(CatalogImport)
        .where(CatalogImport.tenant_id == tenant_id, CatalogImport.status == "ok")
        .order_by(CatalogImport.filename, CatalogImport.id.desc())
        .ext(distinct_on(CatalogImport.filename))
    ).all()
    return [record for record in latest if not record.report_path]


def _record(
    session: Session, tenant: Tenant, filename: str, digest: str, trigger: str, status: str, **values
) -> CatalogImport:
    record = CatalogImport(
        tenant_id=tenant.id, filename=filename, sha256=digest, trigger=trigger, status=status, **values
    )
    session.add(record)
    session.flush()
    return record
