"""Start Blender (a Blender binary, or Python with the bpy module) on a script in ``blender/``.

The pipeline never imports bpy: in production Blender is a program on the render host, and
bpy 5.0.1 needs numpy < 2, which the pipeline's environment does not promise.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from automat_pipeline.errors import AutomatError, disk_full
from automat_pipeline.lifeline import die_with
from automat_pipeline.output_types import OutputType

RESULT_PREFIX = "AUTOMAT_RESULT "
PROGRESS = re.compile(r"^\[\w+\] (\d{1,3})% \(")  # blender/automat_blender/output.py reports these


SCRIPT = "render.py"
CHECK_SCRIPT = "check_template.py"


def blender_command(executable: str, scripts_dir: str, args: list[str], script: str = SCRIPT) -> list[str]:
    """The command line running ``script`` (a render by default); a Python executable means the bpy
    module. A .blend's own scripts never run: the scripts open templates with auto-run off, and a
    Blender binary starts with it off too."""
    script_path = str(Path(scripts_dir) / script)
    if Path(executable).name.startswith("python"):
        return [executable, script_path, "--", *args]
    return [executable, "--background", "--factory-startup", "--disable-autoexec", "--python", script_path, "--", *args]


def render_args(
    glb: Path,
    output: Path,
    output_type: OutputType,
    materials: Path | None = None,
    template: Path | None = None,
    label: str | None = None,
) -> list[str]:
    """Arguments of ``blender/render.py`` for one output type (a PNG, an MP4, or a .blend by
    ``output``'s suffix); ``materials`` is a library JSON file, ``template`` a .blend scene, ``label``
    the step that prefixes Blender's log lines (default: the output type's kind)."""
    args = [
        str(glb),
        str(output),
        "--size",
        str(output_type.resolution),
        "--engine",
        output_type.engine,
        "--samples",
        str(output_type.samples),
        "--camera",
        output_type.camera,
        "--frames",
        str(output_type.frames if output_type.kind == "turntable" else 0),
        "--label",
        label or output_type.kind,
        "--device",
        output_type.cycles_device or "gpu",
    ]
    args += [] if output_type.ground_shadow else ["--no-ground-shadow"]
    args += [] if output_type.denoising else ["--no-denoise"]
    args += [] if output_type.transparent else ["--opaque"]
    args += ["--materials", str(materials)] if materials else []
    return args + (["--template", str(template)] if template else [])


def run_blender(
    command: list[str],
    env: dict[str, str] | None = None,
    echo: bool = False,
    timeout: float = 600,
    output: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Run Blender; return the script's results (one per render, a batch's in order) or raise
    AutomatError with Blender's reason.

    Blender runs in its own process group, and dies with this process (``lifeline``). Past
    ``timeout`` seconds, or when this process is interrupted (a terminated Dagster run), the whole
    group gets SIGTERM, then SIGKILL after a grace period (a stopped Blender too), and a partial
    ``output`` is removed. ``echo`` copies Blender's output to stderr
    (a Dagster run's compute log) as it arrives; ``on_progress`` hears each percentage Blender
    reports (``[still] 50% (8/16 samples)``).
    """
    try:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=functools.partial(die_with, os.getpid()),
        )
    except (FileNotFoundError, PermissionError) as error:
        raise AutomatError(
            "missing_blender", f"cannot start Blender {command[0]!r} (AUTOMAT_BLENDER): {error.strerror}"
        ) from error
    timed_out = threading.Event()
    watchdog = threading.Timer(timeout, lambda: (timed_out.set(), _stop_group(process)))
    watchdog.start()
    lines: deque[str] = deque(maxlen=50)
    results, finished = [], False
    try:
        for line in process.stdout:
            if line.startswith(RESULT_PREFIX):
                results.append(json.loads(line[len(RESULT_PREFIX) :]))
            else:
                if echo:
                    sys.stderr.write(line)
                if on_progress and (reported := PROGRESS.match(line)):
                    on_progress(int(reported[1]))
                if line.strip():
                    lines.append(line.strip())
        code = process.wait()
        finished = True
    finally:
        watchdog.cancel()
        _stop_group(process)
        if not (finished and code == 0 and results) and output is not None:
            Path(output).unlink(missing_ok=True)
    if timed_out.is_set():
        raise AutomatError("timeout", f"Blender did not finish in {timeout:g} s and was stopped")
    if code != 0 or not results:
        reason = next((line for line in reversed(lines) if line.startswith("error:")), None)
        raise (output is not None and disk_full(output)) or AutomatError(
            "render_failed", (reason or (lines[-1] if lines else f"exit code {code}")).removeprefix("error: ")
        )
    return results


def _stop_group(process: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to Blender's whole process group; SIGKILL to whatever is left of it after ``grace``."""
    if _group_gone(process):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _group_gone(process):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _group_gone(process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader: a zombie still counts as a member
    try:
        os.killpg(process.pid, 0)
        return False
    except ProcessLookupError:
        return True
