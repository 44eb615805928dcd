"""Start Blender (a Blender binary, or Python with the bpy module) on a script in ``blender/``.

The pipeline never imports bpy: bpy 5.0.1 needs numpy < 2 and cadquery numpy >= 2, and in
production Blender is a program on the render host anyway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
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


def run_blender(command: list[str], env: dict[str, str] | None = None, echo: bool = False,
                timeout: float = 600) -> dict:
    """Run Blender; return the script's result or raise InputError with Blender's reason.

    ``echo`` copies Blender's output to stderr (a Dagster run's compute log) as it arrives.
    """
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: deque[str] = deque(maxlen=50)
    result = None
    try:
        for line in process.stdout:
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
            else:
                if echo:
                    sys.stderr.write(line)
                if line.strip():
                    lines.append(line.strip())
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        process.kill()
        raise InputError("timeout", f"Blender did not finish in {timeout:.0f} s") from error
    if code != 0 or result is None:
        reason = next((line for line in reversed(lines) if line.startswith("error:")), None)
        raise InputError("render_failed", (reason or (lines[-1] if lines else f"exit code {code}"))
                         .removeprefix("error: "))
    return result
