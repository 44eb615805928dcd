"""``/health``: whether the database and Dagster answer (nothing about any tenant: it needs no login)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from automat_pipeline.api.deps import scoped_session, settings

router = APIRouter(tags=["health"])


class Health(BaseModel):
    database: bool = Field(description="The domain database answers.")
    dagster: bool = Field(
        description="The Dagster webserver answers; while it does not, submitted order lines "
        "wait as pending and are launched once it is back."
    )


@router.get("/health")
def health(request: Request) -> Health:
    """Whether the database and Dagster answer."""
    try:
        with scoped_session(settings(request).api_database_url, None) as s:
            s.execute(text("SELECT 1"))
        database = True
    except SQLAlchemyError:
        database = False
    return Health(database=database, dagster=request.app.state.dagster.healthy())
