"""Engine, device and file settings, live progress, and writing the still, movie or .blend."""

import os
import re

import bpy

from automat_blender.gpu_probe import cpu, opengl_device, probe_gpu
from automat_blender.log import Log

ENGINES = {"cycles": "CYCLES", "eevee": "BLENDER_EEVEE", "workbench": "BLENDER_WORKBENCH"}


def configure(scene, args, log: Log) -> dict | None:
    """Apply the output type's settings; returns the Cycles device (None: OpenGL, known after rendering)."""
    scene.render.engine = ENGINES[args.engine]
    scene.render.resolution_x = scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    if args.frames:  # H.264 has no alpha: turntables are opaque
        scene.render.film_transparent = False
        scene.render.image_settings.media_type = "VIDEO"
        scene.render.image_settings.file_format = "FFMPEG"
        scene.render.ffmpeg.format, scene.render.ffmpeg.codec = "MPEG4", "H264"
    else:
        scene.render.film_transparent = not args.opaque
        scene.render.image_settings.media_type = "IMAGE"
        scene.render.image_settings.file_format = "PNG"
        scene.render.image_settings.color_mode = "RGB" if args.opaque else "RGBA"
    if args.engine == "cycles":
        device = probe_gpu(log) if args.device == "gpu" else cpu("CPU requested")
        scene.cycles.device = "GPU" if device["backend"] != "CPU" else "CPU"
        scene.cycles.samples = args.samples
        scene.cycles.use_adaptive_sampling = True
        scene.cycles.use_denoising = args.denoise
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
        scene.cycles.denoising_prefilter = "FAST"
        return device
    if args.engine == "eevee":
        scene.eevee.taa_render_samples = args.samples
    return None


def report_progress(log: Log, prefix: str, frames: int) -> None:
    """Log the share done, at most once per quarter: samples of a still, frames of a turntable."""
    done = {"quarter": -1, "frames": 0}

    def report(count: int, total: int, unit: str) -> None:
        percent = 100 * count // total
        if percent // 25 > done["quarter"]:
            done["quarter"] = percent // 25
            log.info(f"[{prefix}] {percent}% ({count}/{total} {unit})")

    def on_stats(stats: str) -> None:
        match = re.search(r"Sample (\d+)/(\d+)", stats)
        if match and int(match[2]):
            report(int(match[1]), int(match[2]), "samples")

    def on_frame(scene, *_) -> None:
        done["frames"] += 1
        report(done["frames"], frames, "frames")

    bpy.app.handlers.render_write.clear()
    bpy.app.handlers.render_stats.clear()
    if frames:
        bpy.app.handlers.render_write.append(on_frame)
    else:
        bpy.app.handlers.render_stats.append(on_stats)


def write(scene, output: str, frames: int, device: dict | None, log: Log, prefix: str) -> dict:
    """Render to ``output`` (PNG or MP4), or save the set-up scene when it names a .blend; returns
    the device that rendered."""
    if output.endswith(".blend"):  # the scene itself, for an artist to open
        scene.render.filepath = "//render"
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(output), compress=True, copy=True)
        return device or cpu("nothing rendered: the scene was saved")
    scene.render.filepath = os.path.abspath(output)
    report_progress(log, prefix, frames)
    if frames:
        bpy.ops.render.render(animation=True)
    else:
        bpy.ops.render.render(write_still=True)
    return device or opengl_device(log)
