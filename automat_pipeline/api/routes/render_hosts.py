"""``/render-hosts``: each render host's GPU status, for global admins.

Read from ``render_hosts``, which each host's warm-up (``automat render-host warm``) and every
render it serves write: the API needs neither Dagster nor the hosts themselves.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from automat_pipeline.api.deps import Tx, Who
from automat_pipeline.api.security import Permission
from automat_pipeline.db import repository

router = APIRouter(tags=["render hosts"])


class Probe(BaseModel):
    device: str | None = Field(None, description="The device the probe activated, or CPU.")
    backend: str | None = Field(None, description="OPTIX, CUDA, HIP, ONEAPI, METAL or CPU.")
    driver: str | None = Field(None, description="The GPU driver's version, where known.")
    fallback_reason: str | None = Field(None, description="Why it fell back to the CPU; null when a GPU was found.")
    render_seconds: float | None = Field(None, description="Seconds of the probing render in Blender.")


class RenderHostOut(BaseModel):
    name: str = Field(description="The host (AUTOMAT_RENDER_HOST, the run queue's render_hosts entry).")
    device: str | None = Field(description="The GPU the last probe or render used, or CPU.")
    backend: str | None = Field(description="Its compute backend (OPTIX, CUDA, …) or CPU.")
    driver: str | None = Field(description="The GPU driver's version, where known.")
    probed_at: datetime | None = Field(description="When the GPU was last probed (warm-up or a GPU Cycles render).")
    last_probe: Probe = Field(description="What that probe found.")
    gpu_available: bool = Field(description="The last probe found and activated a GPU.")
    cache_warm: bool = Field(description="Cycles' GPU kernels are compiled and cached for this host's card.")
    warmed_at: datetime | None = Field(description="When the kernel cache was last found or made warm.")
    renders_on_gpu: int = Field(description="Renders this host served on a GPU.")
    renders_on_cpu: int = Field(description="Renders this host served on the CPU (asked for, or a fallback).")
    last_render_at: datetime | None = Field(description="When it last finished a render.")


@router.get("/render-hosts")
def list_render_hosts(who: Who, tx: Tx) -> list[RenderHostOut]:
    """Every render host's GPU status (global admins): device, backend, driver, the last probe,
    whether the kernel cache is warm, and the renders served on GPU and on CPU."""
    who.require(Permission.view_render_hosts)
    return [
        RenderHostOut(
            name=h.name,
            device=h.device,
            backend=h.backend,
            driver=h.driver,
            probed_at=h.probed_at,
            last_probe=Probe(**h.probe),
            gpu_available=bool(h.probe) and h.probe.get("fallback_reason") is None,
            cache_warm=h.cache_warm,
            warmed_at=h.warmed_at,
            renders_on_gpu=h.gpu_renders,
            renders_on_cpu=h.cpu_renders,
            last_render_at=h.last_render_at,
        )
        for h in repository.render_hosts(tx)
    ]
