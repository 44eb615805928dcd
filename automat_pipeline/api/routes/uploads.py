"""Uploads into the tenant's inbox, and what the pipeline made of them."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy import select

from automat_pipeline.api.deps import Id, Tx, Who, owned, settings
from automat_pipeline.api.security import Permission
from automat_pipeline.db.models import CatalogImport, ProductFile, Tenant, Upload

router = APIRouter(tags=["uploads"])


class UploadOut(BaseModel):
    id: int = Field(description="Poll GET /uploads/{id}.")
    filename: str = Field(description="The stored (safe) file name in the tenant's inbox.")
    kind: Literal["catalog", "step"] = Field(description="What the content is.")
    size_bytes: int = Field(description="Bytes stored.")
    sha256: str = Field(description="Content hash.")
    created_at: datetime | None = Field(description="When it arrived.")
    status: Literal["received", "ok", "rejected"] = Field(
        description="received: waiting for the pipeline; then what the pipeline made of it."
    )
    error: str | None = Field(description="Why the pipeline rejected it.")


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _sniff(head: bytes, name: str) -> str:
    if head.startswith(b"PK\x03\x04") and name.lower().endswith(".xlsx"):
        return "catalog"
    if head.lstrip().startswith(b"ISO-10303-21") and name.lower().endswith((".stp", ".step")):
        return "step"
    raise HTTPException(415, f"{name}: neither an .xlsx workbook (zip) nor a STEP file (ISO-10303-21)")


@router.post(
    "/uploads",
    status_code=201,
    responses={
        413: {"description": "Larger than the upload limit."},
        415: {"description": "Not a workbook or STEP file."},
    },
)
def upload(file: UploadFile, request: Request, who: Who, tx: Tx) -> UploadOut:
    """Stream a product list (.xlsx) or a STEP file into the tenant's inbox; the sensor picks it up."""
    who.require(Permission.own_orders)
    tenant = tx.get(Tenant, who.tenant())
    if tenant is None:
        raise HTTPException(404, "no such tenant")
    name = SAFE_NAME.sub("_", Path(file.filename or "upload").name).lstrip("._-")[:200] or "upload"
    head = file.file.read(64)
    kind = _sniff(head, name)
    inbox = Path(settings(request).uploads_dir) / tenant.slug
    inbox.mkdir(parents=True, exist_ok=True)
    partial = inbox / f".{name}.part"  # the sensor ignores dot files
    limit, size, digest = settings(request).max_upload_mb << 20, 0, hashlib.sha256()
    try:
        with partial.open("wb") as out:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"{name} is larger than {limit >> 20} MiB")
                digest.update(chunk)
                out.write(chunk)
                chunk = file.file.read(1 << 20)
        partial.replace(inbox / name)
    finally:
        partial.unlink(missing_ok=True)
    record = Upload(
        tenant_id=tenant.id,
        created_by=who.user_id,
        filename=name,
        kind=kind,
        size_bytes=size,
        sha256=digest.hexdigest(),
    )
    tx.add(record)
    tx.flush()
    return _upload_out(tx, record)


@router.get("/uploads/{upload_id}", responses={404: {"description": "No such upload in your tenant."}})
def upload_status(upload_id: Id, who: Who, tx: Tx) -> UploadOut:
    """What became of an upload."""
    who.require(Permission.own_orders)
    return _upload_out(tx, owned(tx, Upload, upload_id, who, "upload"))


def _upload_out(tx, record: Upload) -> UploadOut:
    if record.kind == "step":
        seen = tx.scalar(
            select(ProductFile).where(
                ProductFile.tenant_id == record.tenant_id,
                ProductFile.filename == record.filename,
                ProductFile.sha256 == record.sha256,
            )
        )
        status, error = (seen.status, seen.error) if seen else ("received", None)
    else:
        seen = tx.scalar(
            select(CatalogImport)
            .where(
                CatalogImport.tenant_id == record.tenant_id,
                CatalogImport.filename == record.filename,
                CatalogImport.sha256 == record.sha256,
            )
            .order_by(CatalogImport.id.desc())
            .limit(1)
        )
        status, error = (("ok" if seen.status == "ok" else "rejected"), seen.error) if seen else ("received", None)
    return UploadOut(
        id=record.id,
        filename=record.filename,
        kind=record.kind,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        created_at=record.created_at,
        status=status,
        error=error,
    )
