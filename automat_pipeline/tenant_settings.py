"""A tenant's settings (``tenants.settings``), validated as a whole before they are stored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from automat_pipeline.cad import ConvertOptions
from automat_pipeline.catalog import CatalogSettings
from automat_pipeline.errors import AutomatError
from automat_pipeline.materials import FALLBACK


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrent_renders: int = Field(1, ge=1, le=64, description="Render runs of this tenant at once.")
    render_engines_allowed: list[Literal["cycles", "eevee", "workbench"]] = Field(
        ["cycles", "eevee", "workbench"], min_length=1, description="Engines this tenant's orders may use."
    )
    max_order_size: int = Field(500, ge=1, le=100_000, description="Most lines one order may hold.")
    fallback_material: str = Field(
        FALLBACK, min_length=1, max_length=200, description="Library material for parts no rule resolves."
    )
    notifications_enabled: bool = Field(True, description="Notify the tenant's users when orders finish.")
    catalog: dict = Field(
        default_factory=dict, description="Product list reading: columns, sheets, include_hidden, categories, max_rows."
    )
    cad: dict = Field(default_factory=dict, description="STEP conversion: deflection, timeout_seconds, memory_mb.")

    @model_validator(mode="after")
    def _sections_parse(self) -> TenantSettings:
        """The sections are read by their own stages; a section they would refuse is refused here."""
        try:
            CatalogSettings.from_tenant({"catalog": self.catalog})
            ConvertOptions.from_tenant({"cad": self.cad})
        except (AutomatError, AttributeError, TypeError, ValueError) as error:  # whatever the readers refuse
            raise ValueError(getattr(error, "reason", str(error))) from error
        return self
