"""GPU first: activate the first GPU backend Cycles finds, or say why the render runs on the CPU.

EEVEE and Workbench draw with OpenGL: their device is known only once a render has made a GL
context, so it is read afterwards (``opengl_device``).
"""

import subprocess

import bpy
import gpu

from automat_blender.log import Log

GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


def probe_gpu(log: Log) -> dict:
    """Device, backend and fallback reason, also logged as a ``[GPU_PROBE]`` line."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in GPU_BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # backend not compiled into this build
            continue
        prefs.get_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for d in prefs.devices:
                d.use = d.type == backend
            log.info(f"[GPU_PROBE] {devices[0].name} activated ({backend})")
            return {"device": devices[0].name, "backend": backend, "fallback_reason": None, "driver": driver(backend)}
    prefs.compute_device_type = "NONE"
    log.info("[GPU_PROBE] No GPU found, falling back to CPU")
    return cpu("no GPU device found")


def cpu(reason: str) -> dict:
    return {"device": "CPU", "backend": "CPU", "fallback_reason": reason, "driver": None}


def driver(backend: str) -> str | None:
    """The GPU driver's version, where the vendor's tool tells it (NVIDIA: nvidia-smi)."""
    if backend not in ("OPTIX", "CUDA"):
        return None
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return "NVIDIA " + subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.split()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def opengl_device(log: Log) -> dict:
    """The OpenGL device the last render drew with: a GPU, or Mesa's software rasteriser."""
    name, backend, version = gpu.platform.renderer_get(), gpu.platform.backend_type_get(), gpu.platform.version_get()
    if gpu.platform.device_type_get() == "SOFTWARE":
        log.info(f"[GPU_PROBE] No GPU found, falling back to CPU ({name})")
        return {
            "device": "CPU",
            "backend": backend,
            "fallback_reason": f"no GPU: software OpenGL ({name})",
            "driver": version,
        }
    log.info(f"[GPU_PROBE] {name} activated ({backend})")
    return {"device": name, "backend": backend, "fallback_reason": None, "driver": version}
