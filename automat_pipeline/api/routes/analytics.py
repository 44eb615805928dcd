"""``/analytics``: the tenant's orders and renders in figures (project managers and above)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from automat_pipeline.api.deps import Tx, Who
from automat_pipeline.api.security import Permission
from automat_pipeline.db.models import MediaAsset, Order

router = APIRouter(tags=["analytics"])


class Analytics(BaseModel):
    orders: dict[str, int] = Field(description="Orders per status.")
    renders: dict[str, int] = Field(description="Media assets per status.")


@router.get("/analytics")
def analytics(who: Who, tx: Tx) -> Analytics:
    """Orders and renders per status (project managers and above)."""
    who.require(Permission.view_analytics)
    counts = {}
    for name, model in (("orders", Order), ("renders", MediaAsset)):
        rows = tx.execute(
            select(model.status, func.count()).where(model.tenant_id == who.tenant()).group_by(model.status)
        )
        counts[name] = {status: n for status, n in rows}
    return Analytics(**counts)
