"""Models more than one router uses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from automat_pipeline.db.models import MediaAsset

NewPassword = Annotated[  # the one password rule: at creation, change and reset
    str, Field(min_length=12, max_length=1024, description="At least 12 characters; stored argon2id.")
]


class MediaOut(BaseModel):
    id: int = Field(description="The media asset's id (GET /media/{id}/file).")
    product_id: int = Field(description="The product it shows.")
    asset: str = Field(
        description="The pipeline step that made it: thumbnail, still, turntable, blend_export, glb_geometry "
        "(the viewer GLB), glb_production, glb_export (a GLB output type)."
    )
    output_type: str = Field(description="The output type it followed.")
    status: str = Field(description="running (its run is making it now), completed, failed or cancelled.")
    error_class: str | None = Field(description="Why it failed, as a class.")
    reason: str | None = Field(description="Why it failed or was cancelled, in one line.")
    updated_at: datetime = Field(description="When this outcome was recorded.")


def media_out(m: MediaAsset) -> MediaOut:
    return MediaOut(
        id=m.id,
        product_id=m.product_id,
        asset=m.asset,
        output_type=m.output_type,
        status=m.status,
        error_class=m.error_class,
        reason=m.reason,
        updated_at=m.updated_at,
    )
