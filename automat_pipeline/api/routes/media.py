"""The media browser, media files and ZIP downloads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, delete, select, tuple_

from automat_pipeline.api.deps import Id, Tx, Who, owned, settings
from automat_pipeline.api.files import media_path, zip_stream
from automat_pipeline.api.schemas import MediaOut
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository
from automat_pipeline.db.models import MediaAsset, Product

router = APIRouter(tags=["media"])
NOT_FOUND = {404: {"description": "No such media asset in your tenant."}}


class MediaPage(BaseModel):
    items: list[MediaOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class Download(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=1000, description="Media asset ids to put in the ZIP."
    )


@router.get("/media", response_model=MediaPage)
def browse(
    who: Who,
    tx: Tx,
    asset: Literal["thumbnail", "still", "turntable", "blend_export", "glb_geometry", "glb_production", "glb_export"]
    | None = Query(None, description="Only this pipeline step's media."),
    status: Literal["running", "completed", "failed", "cancelled"] | None = Query(None, description="Render status."),
    category_key: str | None = Query(None, max_length=200, description="Products of this category."),
    lagertyp: str | None = Query(None, max_length=200, description="Products of this bearing type."),
    q: str | None = Query(None, max_length=200, description="Words in the product's name or PIM-ID."),
    limit: int = Query(50, ge=1, le=200, description="Page size."),
    cursor: str | None = Query(None, pattern=r"^\d+\.\d+:\d+$", description="From the previous page."),
) -> dict:
    """The tenant's media, newest first, a page at a time (keyset pagination: fast at any depth)."""
    who.require(Permission.own_orders)
    # Plain rows, validated once as the response: the browser's hot path skips ORM objects.
    query = select(*(getattr(MediaAsset, name) for name in MediaOut.model_fields)).where(
        MediaAsset.tenant_id == who.tenant()
    )
    if asset:
        query = query.where(MediaAsset.asset == asset)
    if status:
        query = query.where(MediaAsset.status == status)
    if category_key or lagertyp or q:
        product = [Product.id == MediaAsset.product_id, Product.tenant_id == who.tenant()]
        if category_key:
            product.append(Product.category_key == category_key)
        if lagertyp:
            product.append(Product.lagertyp == lagertyp)
        if q:
            product.append(Product.id.in_(repository.product_search(q)))
        query = query.where(select(Product.id).where(and_(*product)).exists())
    if cursor:
        stamp, last_id = cursor.split(":")
        try:
            after = datetime.fromtimestamp(float(stamp)).astimezone()
        except (ValueError, OverflowError, OSError) as error:  # not a cursor this API handed out
            raise HTTPException(422, f"invalid cursor {cursor!r}: {error}") from error
        query = query.where(tuple_(MediaAsset.updated_at, MediaAsset.id) < tuple_(after, int(last_id)))
    rows = tx.execute(query.order_by(MediaAsset.updated_at.desc(), MediaAsset.id.desc()).limit(limit + 1)).all()
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = f"{rows[-1].updated_at.timestamp():.6f}:{rows[-1].id}" if more else None
    return {"items": [row._asdict() for row in rows], "next_cursor": next_cursor}


def _media(tx, who, media_id: int) -> MediaAsset:
    return owned(tx, MediaAsset, media_id, who, "media asset")


@router.get(
    "/media/{media_id}/file",
    response_class=FileResponse,
    responses={**NOT_FOUND, 200: {"description": "The file.", "content": {"application/octet-stream": {}}}},
)
def download_one(media_id: Id, request: Request, who: Who, tx: Tx):
    """Download one media file."""
    who.require(Permission.own_orders)
    return FileResponse(media_path(settings(request).media_dir, _media(tx, who, media_id)))


@router.delete("/media/{media_id}", status_code=204, responses=NOT_FOUND)
def delete_media(media_id: Id, request: Request, who: Who, tx: Tx) -> None:
    """Delete a render: its file and its record (project managers and above)."""
    who.require(Permission.delete_renders)
    m = _media(tx, who, media_id)
    if m.status == "completed":
        media_path(settings(request).media_dir, m).unlink(missing_ok=True)
    tx.execute(delete(MediaAsset).where(MediaAsset.id == m.id))


@router.post(
    "/media/download",
    response_class=StreamingResponse,
    responses={**NOT_FOUND, 200: {"description": "A ZIP of the files.", "content": {"application/zip": {}}}},
)
def download(body: Download, request: Request, who: Who, tx: Tx):
    """Stream the chosen media files as one ZIP."""
    who.require(Permission.own_orders)
    chosen = (_media(tx, who, i) for i in dict.fromkeys(body.ids))
    files = [
        (f"{m.product_id}/{m.asset}-{m.output_type}{path.suffix}", path)
        for m in chosen
        for path in [media_path(settings(request).media_dir, m)]
    ]
    return StreamingResponse(
        zip_stream(files),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="media.zip"'},
    )
