"""``/health``: whether the database and Dagster answer, and how many order lines wait."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from automat_pipeline.api.deps import scoped_session, settings
from automat_pipeline.db.models import Order, OrderLine

router = APIRouter(tags=["health"])


class Health(BaseModel):
    database: bool = Field(description="The domain database answers.")
    dagster: bool = Field(
        description="The Dagster webserver answers; while it does not, submitted order lines "
        "wait as pending and are launched once it is back."
    )
    pending_lines: int | None = Field(description="Submitted order lines not launched yet.")


@router.get("/health")
def health(request: Request) -> Health:
    """Whether the database and Dagster answer, and how many order lines wait for Dagster."""
    try:
        with scoped_session(settings(request).api_database_url, None, bypass=True) as s:
            pending = s.scalar(
                select(func.count(OrderLine.id))
                .join(Order, Order.id == OrderLine.order_id)
                .where(Order.status == "submitted", OrderLine.run_id.is_(None))
            )
        database = True
    except SQLAlchemyError:
        database, pending = False, None
    return Health(database=database, dagster=request.app.state.dagster.healthy(), pending_lines=pending)
