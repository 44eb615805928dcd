"""Render a GLB: a still PNG, a turntable MP4, or the set-up scene as .blend (by the output's suffix).

Run by Blender 5.0.1 (a binary or the `bpy` module).

    python render.py -- GLB OUT.png [--size 256] [--engine cycles|workbench] [--samples 16]
    python render.py -- GLB OUT.mp4 --frames 36 ...          (a turntable: the camera circles the model)
    blender -b --factory-startup --python render.py -- GLB OUT ...

Launched by the pipeline as a child process. Under Dagster Pipes its log lines and metadata go to
the run; either way the last stdout line is ``AUTOMAT_RESULT {json}``. GPU first: the probe logs
which device it activated or why it fell back to the CPU. A failing engine fails the render.
"""

import argparse
import json
import math
import os
import re
import sys
import time

import bpy
from mathutils import Vector

ENGINES = {"cycles": "CYCLES", "workbench": "BLENDER_WORKBENCH"}
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
CAMERAS = {"iso": (1.0, -1.0, 0.8), "front": (0.0, -1.0, 0.15), "top": (0.0, -0.01, 1.0)}  # glTF import: Z up


class RenderError(Exception):
    """A reason the render cannot be made, printed as ``error: <class>: <reason>``."""


class Log:
    """Writes to Dagster Pipes when launched by Dagster, to stderr otherwise."""

    def __init__(self, pipes):
        self.pipes = pipes

    def info(self, message: str) -> None:
        if self.pipes:
            self.pipes.log.info(message)
        print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    argv = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    parser = argparse.ArgumentParser(prog="render.py")
    parser.add_argument("glb")
    parser.add_argument("output")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="cycles")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--frames", type=int, default=0, help="0: a still PNG; N: an N-frame turntable MP4")
    parser.add_argument("--camera", choices=sorted(CAMERAS), default="iso")
    parser.add_argument("--no-denoise", dest="denoise", action="store_false")
    parser.add_argument("--opaque", action="store_true", help="render the world behind the model")
    parser.add_argument("--label", default="render", help="the pipeline step, as the prefix of log lines")
    return parser.parse_args(argv)


def probe_gpu(log: Log) -> dict:
    """Activate the first GPU backend Cycles finds; report the CPU fallback and why."""
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
            return {"device": devices[0].name, "backend": backend, "fallback_reason": None}
    prefs.compute_device_type = "NONE"
    log.info("[GPU_PROBE] No GPU found, falling back to CPU")
    return {"device": "CPU", "backend": "CPU", "fallback_reason": "no GPU device found"}


def import_glb(path: str) -> list:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path)
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    if not meshes:
        raise RenderError(f"empty_model: {path} contains no meshes")
    for obj in meshes:
        for poly in obj.data.polygons:
            poly.use_smooth = True
    return meshes


def bounds(meshes: list) -> tuple[Vector, float]:
    corners = [o.matrix_world @ Vector(c) for o in meshes for c in o.bound_box]
    lo = Vector(min(c[i] for c in corners) for i in range(3))
    hi = Vector(max(c[i] for c in corners) for i in range(3))
    return (lo + hi) / 2, max((hi - lo).length / 2, 1e-6)


def frame_camera(scene, center: Vector, radius: float, position: str):
    """A view from ``position`` whose bounding sphere fills the frame; returns the camera."""
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    fov = camera.data.angle
    distance = radius / math.sin(fov / 2) * 1.05
    direction = Vector(CAMERAS[position]).normalized()
    camera.location = center + direction * distance
    camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    camera.data.clip_start = max(distance - radius * 2, distance / 1000)
    camera.data.clip_end = distance + radius * 2
    return camera


def turntable(scene, camera, center: Vector, frames: int) -> None:
    """The camera circles the model once in ``frames`` frames, at constant speed."""
    pivot = bpy.data.objects.new("Turntable", None)
    pivot.location = center
    scene.collection.objects.link(pivot)
    camera.parent = pivot
    camera.location = camera.location - center
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    scene.frame_start, scene.frame_end = 1, frames
    pivot.rotation_euler = (0.0, 0.0, 0.0)
    pivot.keyframe_insert("rotation_euler", index=2, frame=1)
    pivot.rotation_euler = (0.0, 0.0, 2 * math.pi)
    pivot.keyframe_insert("rotation_euler", index=2, frame=frames + 1)  # frame N+1 = frame 1: a seamless loop


def light(scene) -> None:
    """A sun for shape, and a studio-like world (bright above, dark below) for metals to reflect."""
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", type="SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(45), math.radians(15), math.radians(30))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("World")  # Blender 5 worlds always have a node tree
    nodes, links = world.node_tree.nodes, world.node_tree.links
    direction = nodes.new("ShaderNodeTexCoord")
    split = nodes.new("ShaderNodeSeparateXYZ")
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].position, ramp.color_ramp.elements[0].color = 0.35, (0.03, 0.03, 0.035, 1)
    ramp.color_ramp.elements[1].position, ramp.color_ramp.elements[1].color = 0.75, (1.0, 1.0, 1.0, 1)
    to_unit = nodes.new("ShaderNodeMapRange")
    to_unit.inputs["From Min"].default_value = -1.0
    links.new(direction.outputs["Generated"], split.inputs["Vector"])
    links.new(split.outputs["Z"], to_unit.inputs["Value"])
    links.new(to_unit.outputs["Result"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], nodes["Background"].inputs["Color"])
    nodes["Background"].inputs["Strength"].default_value = 1.0
    scene.world = world


def configure(scene, args, log: Log) -> dict:
    scene.render.engine = ENGINES[args.engine]
    scene.render.resolution_x = scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    if args.frames:  # H.264 has no alpha: turntables are opaque
        scene.render.image_settings.media_type = "VIDEO"
        scene.render.image_settings.file_format = "FFMPEG"
        scene.render.ffmpeg.format, scene.render.ffmpeg.codec = "MPEG4", "H264"
    else:
        scene.render.film_transparent = not args.opaque
        scene.render.image_settings.file_format = "PNG"
        scene.render.image_settings.color_mode = "RGB" if args.opaque else "RGBA"
    device = {"device": "CPU", "backend": "CPU", "fallback_reason": "engine does not use Cycles devices"}
    if args.engine == "cycles":
        device = probe_gpu(log) if args.device == "gpu" else {
            "device": "CPU", "backend": "CPU", "fallback_reason": "CPU requested"}
        scene.cycles.device = "GPU" if device["backend"] != "CPU" else "CPU"
        scene.cycles.samples = args.samples
        scene.cycles.use_adaptive_sampling = True
        scene.cycles.use_denoising = args.denoise
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
        scene.cycles.denoising_prefilter = "FAST"
    else:
        scene.display.shading.light = "STUDIO"
        scene.display.shading.color_type = "MATERIAL"
    return device


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

    if frames:
        bpy.app.handlers.render_write.append(on_frame)
    else:
        bpy.app.handlers.render_stats.append(on_stats)


def render(args: argparse.Namespace, log: Log) -> dict:
    started = time.perf_counter()
    meshes = import_glb(args.glb)
    scene = bpy.context.scene
    center, radius = bounds(meshes)
    camera = frame_camera(scene, center, radius, args.camera)
    if args.frames:
        turntable(scene, camera, center, args.frames)
    light(scene)
    device = configure(scene, args, log)
    prefix = args.label
    log.info(f"[{prefix}] {len(meshes)} meshes, {args.engine} on {device['device']}, {args.size}px"
             + (f", {args.frames} frames" if args.frames else ""))
    if args.output.endswith(".blend"):  # the set-up scene itself, for an artist to open
        scene.render.filepath = "//render"
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.output), compress=True, copy=True)
    else:
        scene.render.filepath = os.path.abspath(args.output)
        report_progress(log, prefix, args.frames)
        bpy.ops.render.render(animation=True) if args.frames else bpy.ops.render.render(write_still=True)
    return {
        "engine": args.engine,
        "frames": args.frames,
        "camera": args.camera,
        "samples": args.samples if args.engine == "cycles" else 0,
        "size": args.size,
        "meshes": len(meshes),
        "render_seconds": round(time.perf_counter() - started, 3),
        "output_bytes": os.path.getsize(args.output),
        **device,
    }


def main() -> None:
    args = parse_args(sys.argv)
    if os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            result = render(args, Log(pipes))
            pipes.report_asset_materialization(metadata={k: v for k, v in result.items() if v is not None})
    else:
        result = render(args, Log(None))
    print("AUTOMAT_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    try:
        main()
    except RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
