"""A tenant's settings (``tenants.settings``): typed, bounded, every field with a help text.

Validated as a whole before they are stored (``PUT /settings``); the stages read their own section
(``TenantSettings.of(tenant.settings).cad``). Light on purpose: the API imports it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automat_pipeline.errors import AutomatError
from automat_pipeline.materials import FALLBACK
from automat_pipeline.settings import Settings

Engine = Literal["cycles", "eevee", "workbench"]
CatalogField = Literal["pim_id", "name", "category_key", "lagertyp", "step_file", "materials"]


class CatalogSettings(BaseModel):
    """How the tenant's product lists are read."""

    model_config = ConfigDict(extra="forbid")

    sheets: list[str] | None = Field(
        None, max_length=100, description="Sheets to read by name; none: every visible sheet whose header maps."
    )
    include_hidden: bool = Field(False, description="Also read hidden sheets (when no sheets are named).")
    columns: dict[str, CatalogField | list[CatalogField]] = Field(
        default_factory=dict,
        max_length=200,
        description='A header as written → the field or fields it fills, e.g. {"Part Name": ["pim_id", "name"]}; '
        "other headers are matched by their German or English names.",
    )
    categories: list[str] | None = Field(
        None, max_length=10_000, description="When set, a row's category must be one of these, else it is rejected."
    )
    max_rows: int = Field(1_000_000, ge=1, le=1_000_000, description="A workbook with more data rows is refused.")
    max_uncompressed_bytes: int = Field(
        1 << 30,
        ge=1 << 20,
        le=1 << 30,
        description="A workbook that declares or inflates to more bytes is refused as a zip bomb (at most 1 GiB).",
    )


class CadSettings(BaseModel):
    """How the tenant's STEP files are converted: tessellation and the conversion's limits."""

    model_config = ConfigDict(extra="forbid")

    relative_deflection: float = Field(
        0.001, gt=0, le=0.1, description="Chordal deflection as a share of the model's bounding-box diagonal."
    )
    angular_deflection: float = Field(0.5, gt=0, le=1.5, description="Angular deflection in radians.")
    min_deflection_mm: float = Field(0.01, gt=0, le=10, description="The finest chordal deflection, in mm.")
    max_deflection_mm: float = Field(5.0, gt=0, le=100, description="The coarsest chordal deflection, in mm.")
    timeout_seconds: float = Field(
        300, gt=0, le=3600, description="A conversion running longer is stopped and fails with class timeout."
    )
    memory_mb: int = Field(
        4096, ge=256, le=16384, description="A conversion using more memory (RSS) is stopped: out_of_memory."
    )


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrent_renders: int = Field(1, ge=1, le=64, description="Render runs of this tenant at once.")
    render_engines_allowed: list[Engine] = Field(
        ["cycles", "eevee", "workbench"], min_length=1, description="Engines this tenant's renders may use."
    )
    cycles_device: Literal["gpu", "cpu"] = Field(
        "gpu",
        description="Where Cycles renders unless an output type says otherwise. gpu: the render host's GPU, else "
        "the CPU with a warning in the run log; cpu: always the CPU, and no warning.",
    )
    max_order_size: int = Field(500, ge=1, le=100_000, description="Most lines one order may hold.")
    max_run_retries: int = Field(
        1,
        ge=0,
        le=3,
        description="Times a run whose worker was lost (killed, out of memory, its host gone) is run again "
        "automatically; a step's own failure is never retried.",
    )
    fallback_material: str = Field(
        FALLBACK, min_length=1, max_length=200, description="Library material for parts no rule resolves."
    )
    notifications_enabled: bool = Field(True, description="Notify the tenant's users when orders finish.")
    catalog: CatalogSettings = Field(default_factory=CatalogSettings, description="Product list reading.")
    cad: CadSettings = Field(default_factory=CadSettings, description="STEP conversion.")

    def _guards(self, limits: Settings) -> list[tuple[str, float, float, str]]:
        return [
            ("cad.timeout_seconds", self.cad.timeout_seconds, limits.max_cad_seconds, "AUTOMAT_MAX_CAD_SECONDS"),
            ("cad.memory_mb", self.cad.memory_mb, limits.max_cad_memory_mb, "AUTOMAT_MAX_CAD_MEMORY_MB"),
            ("catalog.max_rows", self.catalog.max_rows, limits.max_catalog_rows, "AUTOMAT_MAX_CATALOG_ROWS"),
            (
                "catalog.max_uncompressed_bytes",
                self.catalog.max_uncompressed_bytes,
                limits.max_workbook_mb << 20,
                "AUTOMAT_MAX_WORKBOOK_MB",
            ),
        ]

    def over_limits(self, limits: Settings) -> list[str]:
        """The resource guards these settings would lift above this deployment's maxima."""
        return [
            f"{field} {value:g} is over this deployment's maximum of {maximum:g} ({variable})"
            for field, value, maximum, variable in self._guards(limits)
            if value > maximum
        ]

    def within(self, limits: Settings) -> TenantSettings:
        """These settings with every resource guard at most the deployment's maximum (the workers use
        these: a maximum lowered after a tenant chose more still holds)."""
        cad = {
            "timeout_seconds": min(self.cad.timeout_seconds, limits.max_cad_seconds),
            "memory_mb": min(self.cad.memory_mb, limits.max_cad_memory_mb),
        }
        catalog = {
            "max_rows": min(self.catalog.max_rows, limits.max_catalog_rows),
            "max_uncompressed_bytes": min(self.catalog.max_uncompressed_bytes, limits.max_workbook_mb << 20),
        }
        return self.model_copy(
            update={"cad": self.cad.model_copy(update=cad), "catalog": self.catalog.model_copy(update=catalog)}
        )

    @classmethod
    def of(cls, stored: dict | None) -> TenantSettings:
        """A tenant's stored settings, defaults filled in; settings that do not validate are a
        classified error naming each field."""
        try:
            return cls.model_validate(stored or {})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise AutomatError("invalid_settings", problems) from error
