"""Start Blender (a Blender binary, or Python with the bpy module) on a script in ``blender/``.

The pipeline never imports bpy: bpy 5.0.1 needs numpy < 2 and cadquery numpy >= 2, and in
production Blender is a program on the render host anyway.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from automat_pipeline.errors import InputError

RESULT_PREFIX = "AUTOMAT_RESULT "


def blender_command(executable: str, scripts_dir: str, script: str, args: list[str]) -> list[str]:
    """The command line for one script run; a Python executable means the bpy module."""
    script_path = str(Path(scripts_dir) / script)
    if Path(executable).name.startswith("python"):
        return [executable, script_path, "--", *args]
    return [executable, "--background", "--factory-startup", "--python", script_path, "--", *args]


def thumbnail_args(glb: Path, output: Path, size: int, engine: str, samples: int) -> list[str]:
    return [str(glb), str(output), "--size", str(size), "--engine", engine, "--samples", str(samples)]


def run_blender(command: list[str], timeout: float = 600) -> dict:
    """Run outside Dagster; return the script's result or raise InputError with Blender's reason."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise InputError("timeout", f"Blender did not finish in {timeout:.0f} s") from error
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not results:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("error:")), None)
        raise InputError("render_failed", (reason or (lines[-1] if lines else f"exit {done.returncode}"))
                         .removeprefix("error: "))
    return json.loads(results[-1][len(RESULT_PREFIX):])
