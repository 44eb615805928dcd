"""A render host: its name, and its warm-up, which probes the GPU and has Cycles compile its GPU
kernels once, before the host takes work.

On a card the Blender build carries no binary for (the bpy wheel has none for sm_90: H100, H200),
the first GPU render compiles Cycles' kernels for minutes; the OptiX and CUDA caches keep them, on
the shared ``automat_gpu_cache`` volume, so that happens once per card and driver, not once per
render container. The render image's entrypoint runs ``automat render-host warm``; the
container's healthcheck turns healthy when it has written its status file. Light: no Dagster.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

from automat_pipeline.blender import blender_command, render_args, run_blender
from automat_pipeline.output_types import OutputType
from automat_pipeline.settings import Settings

# The shipped studio look (ground shadow included: OptiX builds a pipeline per feature set), tiny.
WARM_UP = OutputType(name="warm-up", kind="still", resolution=64, samples=1, cycles_device="gpu")


def name(settings: Settings) -> str:
    """This host's name in ``render_hosts``: AUTOMAT_RENDER_HOST, else the machine's host name."""
    return settings.render_host or socket.gethostname()


def warm(settings: Settings, timeout: float, status_file: Path | None = None) -> dict:
    """Render a bearing in the studio look once, with Cycles on the GPU: the probe, and the
    kernels compiled into the caches. The probe is recorded in ``render_hosts`` when a database is
    configured; ``status_file`` (the healthcheck's) is written last."""
    from automat_pipeline.bearings import CATALOGUE, write_step
    from automat_pipeline.materials import ALIASES, FALLBACK, LIBRARY, MaterialResolver, for_blender
    from automat_pipeline.opencascade import convert_step

    started = time.perf_counter()
    library = {m.name: m for m in LIBRARY}
    with tempfile.TemporaryDirectory(prefix="automat-warm-") as work:
        folder = Path(work)
        step = write_step(CATALOGUE[0], folder / "bearing.step")
        resolver = MaterialResolver(library, ALIASES, {"Cage": "SCHAEFFLER_020201_Brass-Cage"})
        convert_step(step, folder / "bearing.glb", resolver=resolver)
        (folder / "library.json").write_text(json.dumps(for_blender(library, FALLBACK)))
        args = render_args(folder / "bearing.glb", folder / "warm-up.png", WARM_UP, folder / "library.json")
        [result] = run_blender(
            blender_command(settings.blender, str(settings.blender_scripts), args), timeout=timeout, echo=True
        )
    report = {
        "host": name(settings),
        "warm": result["device"] != "CPU",  # kernels were built (or loaded from the cache) for a GPU
        **{k: result[k] for k in ("device", "backend", "driver", "fallback_reason", "render_seconds")},
        "seconds": round(time.perf_counter() - started, 3),
    }
    if settings.database_url:
        from automat_pipeline.db import repository
        from automat_pipeline.db.database import session

        with session(settings.database_url) as s, s.begin():
            repository.record_host_probe(s, report["host"], result, warmed=report["warm"])
    if status_file:
        status_file.parent.mkdir(parents=True, exist_ok=True)
        status_file.write_text(json.dumps(report))
    return report
