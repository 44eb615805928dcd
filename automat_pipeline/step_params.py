"""The parameters of the workflow steps that take any: each is its asset's run config.

Plain pydantic models, so the API validates and documents them without importing Dagster; each
asset's ``Config`` class is the Dagster side of the same model (``class RenderConfig(Config, RenderParams)``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CatalogImportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workbooks: list[str] = Field(
        default_factory=list,
        description="File names in the tenant's inbox to import; empty imports every workbook there.",
    )
    trigger: str = Field(default="manual", description="What asked for the import (sensor, cli, manual).")


class RenderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_types: list[str] = Field(
        default_factory=list,
        description="The output types to make, by name (an order line names one; the step takes those of its "
        "kind: thumbnail, still, turntable or glb); empty: every one of its kind (the thumbnail: the tenant's "
        "thumbnail type). A GLB type's quality sets the tessellation: standard is the conversion's own GLB, coarse "
        "and fine make their own.",
    )


PARAMETERS: dict[str, type[BaseModel]] = {  # step (asset key) → its parameters
    "product_catalog": CatalogImportParams,
    "thumbnail": RenderParams,
    "still": RenderParams,
    "turntable": RenderParams,
    "glb_export": RenderParams,
}
