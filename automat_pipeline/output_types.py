"""Output types: what a deliverable is (a render, or a GLB), with a help text for every setting.

The shipped defaults live here; a tenant adds its own or overrides one by name (``output_types``
table). The help texts are the fields' descriptions, for the UI and the API.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automat_pipeline.errors import AutomatError
from automat_pipeline.settings import Settings

Kind = Literal["thumbnail", "still", "turntable", "glb"]
STEP_OF_KIND: dict[str, str] = {  # the pipeline step (asset) that makes an output type of each kind
    "thumbnail": "thumbnail",
    "still": "still",
    "turntable": "turntable",
    "glb": "glb_export",
}
RENDERED = frozenset({"thumbnail", "still", "turntable"})  # kinds Blender makes
QUALITY_DEFLECTION = {"coarse": 4.0, "standard": 1.0, "fine": 0.25}  # × the tenant's cad deflections
TEMPLATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.blend$"  # a template's file name (automat_pipeline.templates)


class OutputType(BaseModel):
    """One deliverable: a thumbnail, a still, a turntable, or a GLB."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not a silent default

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Unique per tenant; used in file names.")
    kind: Kind = Field(
        description="thumbnail: the quick preview of every product; still: a production image; "
        "turntable: an MP4 of the camera circling the product; glb: the 3D model as binary glTF "
        "(the render settings below do not apply to it)."
    )
    resolution: int = Field(256, ge=16, le=8192, description="Width and height in pixels (square images).")
    engine: Literal["cycles", "eevee", "workbench"] = Field(
        "cycles",
        description="cycles: path-traced, GPU first; eevee: rasterised on the GPU (on a CPU-only host "
        "it compiles shaders for about 45 s per process); workbench: fast flat shading for "
        "previews.",
    )
    samples: int = Field(
        16,
        ge=1,
        le=4096,
        description="Samples per pixel for Cycles (adaptive sampling may stop "
        "earlier) and EEVEE; more is cleaner and slower.",
    )
    denoising: bool = Field(True, description="OpenImageDenoise after rendering (Cycles).")
    transparent: bool = Field(
        True, description="Transparent background (PNG with alpha). Turntables are always opaque: H.264 has no alpha."
    )
    ground_shadow: bool = Field(
        True,
        description="A soft shadow under the model that composites on any background (Cycles: a shadow catcher; "
        "EEVEE: contact shadow by ambient occlusion). Workbench draws none.",
    )
    cycles_device: Literal["gpu", "cpu"] | None = Field(
        None,
        description="Where Cycles renders. gpu: the render host's GPU, else the CPU with a logged warning; "
        "cpu: always the CPU, no warning. Unset: the tenant's cycles_device setting.",
    )
    camera: Literal["iso", "front", "top"] = Field("iso", description="Where the camera looks from.")
    frames: int = Field(36, ge=2, le=3600, description="Turntable frames for one full turn (ignored by stills).")
    template: str | None = Field(
        None,
        pattern=TEMPLATE_NAME,
        description="One of the tenant's checked templates (GET /templates): a .blend whose world, lights "
        "and render settings replace the studio default; the model is "
        "imported into it and framed by its own camera.",
    )
    timeout_seconds: float = Field(
        300, gt=0, le=86400, description="A render running longer is stopped and fails with class timeout."
    )
    quality: Literal["coarse", "standard", "fine"] = Field(
        "standard",
        description="GLB only: tessellation. standard is the tenant's CAD settings and delivers the GLB every "
        "conversion makes; coarse (4x the deflection: fewer triangles) and fine (a quarter: smoother) make a GLB "
        "of their own and leave the standard one alone.",
    )
    glb_variant: Literal["production", "viewer"] = Field(
        "production",
        description="GLB only: production (each part's library material by name, for artists and renderers) or "
        "viewer (the same colours, for web viewers).",
    )

    @property
    def suffix(self) -> str:
        return {"turntable": ".mp4", "glb": ".glb"}.get(self.kind, ".png")

    @property
    def step(self) -> str:
        """The pipeline step (asset) that makes it."""
        return STEP_OF_KIND[self.kind]


DEFAULTS = [
    # Workbench: 0.6 s against Cycles' 3.4 s per CPU thumbnail, 5x more in a warm batch (bench/results/render.json)
    OutputType(name="thumbnail", kind="thumbnail", engine="workbench"),
    OutputType(name="still-web", kind="still", resolution=1024, samples=32),
    OutputType(
        name="turntable-web", kind="turntable", resolution=512, transparent=False, frames=36, timeout_seconds=3600
    ),
    OutputType(name="glb", kind="glb"),
    OutputType(name="glb-fine", kind="glb", quality="fine"),
]


def over_limits(output_type: OutputType, limits: Settings) -> list[str]:
    """What in ``output_type`` asks more of the shared render hosts than this deployment allows."""
    if output_type.kind not in RENDERED:
        return []
    asked = [
        ("resolution", output_type.resolution, limits.max_render_resolution, "AUTOMAT_MAX_RENDER_RESOLUTION"),
        ("samples", output_type.samples, limits.max_render_samples, "AUTOMAT_MAX_RENDER_SAMPLES"),
        ("timeout_seconds", output_type.timeout_seconds, limits.max_render_seconds, "AUTOMAT_MAX_RENDER_SECONDS"),
    ]
    if output_type.kind == "turntable":
        asked.append(("frames", output_type.frames, limits.max_turntable_frames, "AUTOMAT_MAX_TURNTABLE_FRAMES"))
    return [
        f"{field} {value:g} is over this deployment's maximum of {maximum:g} ({variable})"
        for field, value, maximum, variable in asked
        if value > maximum
    ]


def check_limits(output_type: OutputType, limits: Settings) -> OutputType:
    """``output_type``, or a classified error naming each setting over the deployment's maxima."""
    problems = over_limits(output_type, limits)
    if problems:
        raise AutomatError("over_limit", f"output type {output_type.name!r}: {'; '.join(problems)}")
    return output_type


def parse(name: str, settings: dict) -> OutputType:
    """A tenant's stored output type, validated; bad settings name the field and the problem."""
    try:
        return OutputType(name=name, **settings)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise AutomatError("invalid_output_type", f"output type {name!r}: {problems}") from error


def merged(tenant_types: list[OutputType]) -> list[OutputType]:
    """The shipped defaults, with the tenant's own added or overriding by name."""
    by_name = {t.name: t for t in DEFAULTS} | {t.name: t for t in tenant_types}
    return list(by_name.values())
