"""Render a GLB: a still PNG, a turntable MP4, or the set-up scene as .blend (by the output's suffix).

Run by Blender 5.0.1 (a binary or the `bpy` module); the stages live in ``automat_blender/``.

    python render.py -- GLB OUT.png [--size 256] [--engine cycles|eevee|workbench] [--samples 16]
    python render.py -- GLB OUT.mp4 --frames 36 ...          (a turntable: the camera circles the model)
    python render.py -- --batch JOBS.json                    (one warm process; JOBS: a list of argument lists)
    blender -b --factory-startup --disable-autoexec --python render.py -- GLB OUT ...

Launched by the pipeline as a child process. Under Dagster Pipes its log lines and metadata go to
the run; either way every render ends with a stdout line ``AUTOMAT_RESULT {json}``. GPU first:
the probe logs which device it activated or why it fell back to the CPU. A failing engine fails
the render; in a batch, the failure is that job's result and the next job goes on.
"""

import argparse
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # Blender's --python does not add it

import bpy  # noqa: E402

from automat_blender import RenderError  # noqa: E402
from automat_blender.camera import POSITIONS, frame_camera, turntable  # noqa: E402
from automat_blender.glb_import import bounds, import_glb  # noqa: E402
from automat_blender.log import Log  # noqa: E402
from automat_blender.materials import apply_library, load_library  # noqa: E402
from automat_blender.output import ENGINES, configure, write  # noqa: E402
from automat_blender.scene import set_up  # noqa: E402


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise RenderError(f"invalid_arguments: {message}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="render.py")
    parser.add_argument("glb")
    parser.add_argument("output")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="cycles")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--frames", type=int, default=0, help="0: a still PNG; N: an N-frame turntable MP4")
    parser.add_argument("--camera", choices=sorted(POSITIONS), default="iso")
    parser.add_argument("--no-denoise", dest="denoise", action="store_false")
    parser.add_argument("--opaque", action="store_true", help="render the backdrop behind the model")
    parser.add_argument("--no-ground-shadow", dest="ground_shadow", action="store_false")
    parser.add_argument("--template", help="a .blend whose world, lights and settings replace the studio")
    parser.add_argument("--materials", help="library JSON: parts' materials become Principled BSDFs from it")
    parser.add_argument("--label", default="render", help="the pipeline step, as the prefix of log lines")
    return parser.parse_args(argv)


def render(args: argparse.Namespace, log: Log) -> dict:
    started, started_at = time.perf_counter(), time.time()
    meshes = import_glb(args.glb, args.template)
    scene = bpy.context.scene
    materials = apply_library(meshes, *load_library(args.materials), log) if args.materials else {}
    model = bounds(meshes)
    camera = frame_camera(scene, model.center, model.radius, args.camera)
    if args.frames:
        turntable(scene, camera, model.center, args.frames)
    lighting = set_up(scene, model, args.engine, bool(args.template), args.ground_shadow)
    device = configure(scene, args, log)
    log.info(
        f"[{args.label}] {len(meshes)} meshes, {args.engine}"
        + (f" on {device['device']}" if device else "")
        + f", {args.size}px, {lighting}"
        + (f", {args.frames} frames" if args.frames else "")
    )
    device = write(scene, args.output, args.frames, device, log, args.label)
    return {
        "output": args.output,
        "engine": args.engine,
        "frames": args.frames,
        "camera": args.camera,
        "samples": 0 if args.engine == "workbench" else args.samples,
        "cycles_device": args.device if args.engine == "cycles" else None,  # what was asked for
        "size": args.size,
        "meshes": len(meshes),
        "lighting": lighting,
        "materials": materials,
        "render_seconds": round(time.perf_counter() - started, 3),
        "started_at": started_at,  # wall clock (epoch seconds) of this render in Blender
        "finished_at": time.time(),
        "output_bytes": os.path.getsize(args.output),
        **device,
    }


def emit(result: dict) -> None:
    print("AUTOMAT_RESULT " + json.dumps(result), flush=True)


def batch(path: str, log: Log) -> None:
    """Render every job in one process: Blender and its kernels start once."""
    with open(path) as f:
        jobs = json.load(f)
    for argv in jobs:
        try:
            emit(render(parse_args(argv), log))
        except Exception as error:  # one bad model fails its own job only
            reason = str(error) if isinstance(error, RenderError) else f"render_failed: {error}".splitlines()[0]
            log.info(f"error: {reason}")
            emit({"output": argv[1] if len(argv) > 1 else None, "error": reason})


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    pipes_context = None
    if os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        pipes_context = open_dagster_pipes()
    with pipes_context or contextlib.nullcontext():
        log = Log(pipes_context)
        if argv[:1] == ["--batch"]:
            batch(argv[1], log)
            return
        result = render(parse_args(argv), log)
        if pipes_context:
            pipes_context.report_asset_materialization(
                metadata={
                    k: {"raw_value": v, "type": "json"} if isinstance(v, dict) else v
                    for k, v in result.items()
                    if v is not None
                }
            )
        emit(result)


if __name__ == "__main__":
    try:
        main()
    except RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
