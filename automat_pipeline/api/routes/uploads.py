"""Uploads into the tenant's inbox, and what the pipeline made of them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from automat_pipeline.api import audit
from automat_pipeline.api.deps import Caller, Id, Tx, Who, caller_tenant, owned, scoped_session, settings
from automat_pipeline.api.receive import ReceivedFile, boundary, file_body, receive
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import CatalogImport, MediaAsset, ProductFile, Tenant, Upload
from automat_pipeline.keys import path_under

router = APIRouter(tags=["uploads"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class Rejection(BaseModel):
    sheet: str = Field(description="The workbook's sheet.")
    row: int = Field(description="The row, as Excel numbers it.")
    reason: str = Field(description="Why the row was not imported.")


class ImportOut(BaseModel):
    import_id: int = Field(description="The import.")
    counts: dict[str, int] = Field(description="rows, accepted, rejected, created, updated, unchanged, deactivated.")
    rejected: list[Rejection] = Field(description="This page of the rejected rows with their reasons.")
    rejected_total: int = Field(description="Rejected rows in all.")
    report: str | None = Field(description="The report (.xlsx: every row, its status and reason), once written.")


class ConversionOut(BaseModel):
    product_id: int = Field(description="A product whose catalogue row names this STEP file.")
    pim_id: str = Field(description="Its PIM-ID.")
    status: Literal["waiting", "converted", "failed"] = Field(
        description="waiting: not converted yet; converted: its GLBs exist; failed: see error_class and reason."
    )
    error_class: str | None = Field(description="Why the conversion failed, as a class.")
    reason: str | None = Field(description="Why the conversion failed, in one line.")


class UploadOut(BaseModel):
    id: int = Field(description="Poll GET /uploads/{id}.")
    filename: str = Field(description="The stored (safe) file name in the tenant's inbox.")
    kind: Literal["catalog", "step"] = Field(description="What the content is.")
    size_bytes: int = Field(description="Bytes stored.")
    sha256: str = Field(description="Content hash.")
    created_at: datetime | None = Field(description="When it arrived.")
    status: Literal["received", "ok", "ok_with_rejections", "rejected"] = Field(
        description="received: waiting for the pipeline; ok: imported (a workbook) or readable (a STEP file); "
        "ok_with_rejections: imported, some rows rejected; rejected: the whole file was refused (see error)."
    )
    error: str | None = Field(description="Why the pipeline refused the whole file.")
    catalog_import: ImportOut | None = Field(description="A workbook's import: counts, rejected rows, report.")
    conversions: list[ConversionOut] | None = Field(description="A STEP file: each product that names it.")


UPLOAD_BODY = file_body("An .xlsx product list or a STEP file (.stp, .step).")
SUFFIXES = {".xlsx": "catalog", ".stp": "step", ".step": "step"}


def sniff(head: bytes, name: str) -> str:
    """What the content is, by its first bytes and its extension together."""
    kind = SUFFIXES.get(Path(name).suffix.lower())
    if kind == "catalog" and head.startswith(b"PK\x03\x04"):
        return kind
    if kind == "step" and head.lstrip().startswith(b"ISO-10303-21"):
        return kind
    raise HTTPException(415, f"{name}: neither an .xlsx workbook (zip) nor a STEP file (.stp, .step: ISO-10303-21)")


def _record(request: Request, who: Caller, tenant: Tenant, received: ReceivedFile, kind: str) -> UploadOut:
    with scoped_session(settings(request).api_database_url, who.tenant()) as tx:
        record = Upload(
            tenant_id=tenant.id,
            created_by=who.user_id,
            filename=received.name,
            kind=kind,
            size_bytes=received.size,
            sha256=received.digest.hexdigest(),
        )
        tx.add(record)
        tx.flush()
        audit.request_done(tx, who, request)
        return _upload_out(tx, record)


@router.post(
    "/uploads",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    responses={
        413: {"description": "Larger than the upload limit."},
        415: {"description": "Not a workbook or STEP file."},
    },
)
async def upload(request: Request, who: Who) -> UploadOut:
    """Stream a product list (.xlsx) or a STEP file into the tenant's inbox; the sensor picks it up.

    The body is read only once the caller is known and allowed, straight into the inbox, never
    whole into memory or a temporary folder; a request over the limit is refused (413) by its
    ``Content-Length`` or as soon as it passes it."""
    who.require(Permission.own_orders)
    config = settings(request)
    parts = boundary(request)
    tenant = await run_in_threadpool(caller_tenant, config.api_database_url, who)
    inbox = path_under(config.uploads_dir, tenant.slug)
    inbox.mkdir(parents=True, exist_ok=True)
    received = ReceivedFile(inbox)
    try:
        await receive(request, received, parts)
        kind = sniff(received.head, received.name)
        received.partial.replace(inbox / received.name)
    finally:
        received.discard()
    return await run_in_threadpool(_record, request, who, tenant, received, kind)


@router.get("/uploads/{upload_id}", responses={404: {"description": "No such upload in your tenant."}})
def upload_status(
    upload_id: Id,
    who: Who,
    tx: Tx,
    rejected_offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rejected rows to skip.")] = 0,
    rejected_limit: Annotated[int, Query(ge=1, le=1000, description="Rejected rows per page.")] = 100,
) -> UploadOut:
    """What became of an upload: a workbook's import (counts, rejected rows with reasons, a page at a
    time, the report), a STEP file's conversion for each product that names it."""
    who.require(Permission.own_orders)
    record = owned(tx, Upload, upload_id, who, "upload")
    return _upload_out(tx, record, rejected_offset, rejected_limit)


@router.get(
    "/uploads/{upload_id}/report",
    response_class=FileResponse,
    responses={
        404: {"description": "No such upload, or no report yet."},
        200: {"description": "The import report.", "content": {XLSX: {}}},
    },
)
def upload_report(upload_id: Id, request: Request, who: Who, tx: Tx):
    """A workbook's import report: every row with its status and reason (.xlsx)."""
    who.require(Permission.own_orders)
    imported = _import_of(tx, owned(tx, Upload, upload_id, who, "upload"))
    root = Path(settings(request).media_dir).resolve()
    path = Path(imported.report_path or "").resolve() if imported else None
    if path is None or root not in path.parents or not path.is_file():
        raise HTTPException(404, f"upload {upload_id} has no report (yet)")
    return FileResponse(path, media_type=XLSX, filename=path.name)


def _import_of(tx, record: Upload) -> CatalogImport | None:
    if record.kind != "catalog":
        return None
    return tx.scalar(
        select(CatalogImport)
        .where(
            CatalogImport.tenant_id == record.tenant_id,
            CatalogImport.filename == record.filename,
            CatalogImport.sha256 == record.sha256,
        )
        .order_by(CatalogImport.id.desc())
        .limit(1)
    )


def _upload_out(tx, record: Upload, rejected_offset: int = 0, rejected_limit: int = 100) -> UploadOut:
    status, error, imported, conversions = "received", None, None, None
    if record.kind == "step":
        seen = tx.scalar(
            select(ProductFile).where(
                ProductFile.tenant_id == record.tenant_id,
                ProductFile.filename == record.filename,
                ProductFile.sha256 == record.sha256,
            )
        )
        if seen:
            status, error = seen.status, seen.error
        conversions = _conversions(tx, record, seen)
    elif found := _import_of(tx, record):
        rejected = (found.outcomes or {}).get("rejected", [])
        status = "rejected" if found.status != "ok" else "ok_with_rejections" if rejected else "ok"
        error = found.error
        imported = ImportOut(
            import_id=found.id,
            counts=found.counts or {},
            rejected=[Rejection(**r) for r in rejected[rejected_offset : rejected_offset + rejected_limit]],
            rejected_total=len(rejected),
            report=f"/uploads/{record.id}/report" if found.report_path else None,
        )
    return UploadOut(
        id=record.id,
        filename=record.filename,
        kind=record.kind,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        created_at=record.created_at,
        status=status,
        error=error,
        catalog_import=imported,
        conversions=conversions,
    )


def _conversions(tx, record: Upload, seen: ProductFile | None) -> list[ConversionOut]:
    """Each product naming the file: its conversion's outcome (the latest GLB record), or the file's
    own refusal when it could not even be read."""
    products = repository.products_naming(tx, record.tenant_id, [record.filename])
    glbs = {
        m.product_id: m
        for m in tx.scalars(
            select(MediaAsset).where(
                MediaAsset.tenant_id == record.tenant_id,
                MediaAsset.asset == "glb_production",
                MediaAsset.output_type == "standard",
                MediaAsset.product_id.in_([p.id for p in products]),
            )
        )
    }
    out = []
    for product in products:
        glb = glbs.get(product.id)
        if seen and seen.status == "rejected":
            error_class, _, reason = (seen.error or "rejected: ").partition(": ")
            out.append(
                ConversionOut(
                    product_id=product.id,
                    pim_id=product.pim_id,
                    status="failed",
                    error_class=error_class,
                    reason=reason,
                )
            )
        elif glb is None or glb.status == "running" or (seen and glb.updated_at < seen.recorded_at):
            out.append(
                ConversionOut(
                    product_id=product.id, pim_id=product.pim_id, status="waiting", error_class=None, reason=None
                )
            )
        else:
            out.append(
                ConversionOut(
                    product_id=product.id,
                    pim_id=product.pim_id,
                    status="converted" if glb.status == "completed" else "failed",
                    error_class=glb.error_class,
                    reason=glb.reason,
                )
            )
    return out
