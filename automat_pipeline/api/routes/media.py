"""The media browser, media files and ZIP downloads."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, delete, select, tuple_

from automat_pipeline.api.deps import Id, Tx, Who, owned, settings
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
    asset: Literal["thumbnail", "still", "turntable", "blend_export"] | None = Query(
        None, description="Only this pipeline step's media."
    ),
    status: Literal["completed", "failed", "cancelled"] | None = Query(None, description="Render status."),
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


def _file(request: Request, m: MediaAsset) -> Path:
    """The media file, which must lie in the media folder and exist."""
    root = Path(settings(request).media_dir).resolve()
    path = Path(m.path or "").resolve()
    if m.status != "completed" or root not in path.parents or not path.is_file():
        raise HTTPException(404, f"media asset {m.id} has no file")
    return path


@router.get(
    "/media/{media_id}/file",
    response_class=FileResponse,
    responses={**NOT_FOUND, 200: {"description": "The file.", "content": {"application/octet-stream": {}}}},
)
def media_file(media_id: Id, request: Request, who: Who, tx: Tx):
    """Download one media file."""
    who.require(Permission.own_orders)
    return FileResponse(_file(request, _media(tx, who, media_id)))


@router.delete("/media/{media_id}", status_code=204, responses=NOT_FOUND)
def delete_media(media_id: Id, request: Request, who: Who, tx: Tx) -> None:
    """Delete a render: its file and its record (project managers and above)."""
    who.require(Permission.delete_renders)
    m = _media(tx, who, media_id)
    if m.status == "completed":
        _file(request, m).unlink(missing_ok=True)
    tx.execute(delete(MediaAsset).where(MediaAsset.id == m.id))


@router.post(
    "/media/download",
    response_class=StreamingResponse,
    responses={**NOT_FOUND, 200: {"description": "A ZIP of the files.", "content": {"application/zip": {}}}},
)
def download(body: Download, request: Request, who: Who, tx: Tx):
    """Stream the chosen media files as one ZIP."""
    who.require(Permission.own_orders)
    files = [(m, _file(request, m)) for m in (_media(tx, who, i) for i in dict.fromkeys(body.ids))]
    return StreamingResponse(
        _zip(files), media_type="application/zip", headers={"Content-Disposition": 'attachment; filename="media.zip"'}
    )


class _Chunks:
    """A write-only file for ZipFile whose bytes are handed out as they are written."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _zip(files: list[tuple[MediaAsset, Path]]) -> Iterator[bytes]:
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:  # renders are compressed already
        for m, path in files:
            with (
                archive.open(f"{m.product_id}/{m.asset}-{m.output_type}{path.suffix}", "w") as entry,
                path.open("rb") as source,
            ):
                while chunk := source.read(1 << 20):
                    entry.write(chunk)
                    yield sink.take()
    yield sink.take()
