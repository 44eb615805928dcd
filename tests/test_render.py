"""Real Blender renders (the render environment's bpy), checked pixel by pixel."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import STEP_FIXTURES, blender_processes
from PIL import Image

from automat_pipeline.embedded import REPO
from automat_pipeline.opencascade import convert_step

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def glb(tmp_path_factory):
    path = tmp_path_factory.mktemp("glb") / "as1.glb"
    convert_step(STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp", path)
    return path


@pytest.mark.parametrize("engine", ["cycles", "eevee", "workbench"])
def test_thumbnail_is_transparent_centred_and_framed(tmp_path, glb, engine):
    out = tmp_path / "t.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "automat_pipeline.cli",
            "render",
            "thumbnail",
            str(glb),
            "-o",
            str(out),
            "--size",
            "64",
            "--engine",
            engine,
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["engine"] == engine and result["output_bytes"] == out.stat().st_size
    assert result["device"] == "CPU" and result["fallback_reason"]  # no GPU on this machine
    image = Image.open(out)
    assert image.mode == "RGBA" and image.size == (64, 64)
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
    covered = alpha > 128
    share = covered.mean()
    assert 0.15 < share < 0.9, f"object covers {share:.0%} of the frame"
    ys, xs = np.nonzero(covered)
    assert abs(xs.mean() - 31.5) < 8 and abs(ys.mean() - 31.5) < 8


def test_broken_glb_fails_with_blenders_reason(tmp_path):
    (tmp_path / "bad.glb").write_bytes(b"glTF" + b"\x02\x00\x00\x00" + b"\x00" * 40)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "automat_pipeline.cli",
            "render",
            "thumbnail",
            str(tmp_path / "bad.glb"),
            "-o",
            str(tmp_path / "t.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: render_failed: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "t.png").exists()


def test_render_time_limit_stops_blender_and_leaves_nothing(tmp_path, glb):
    out = tmp_path / "slow.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "automat_pipeline.cli",
            "render",
            "thumbnail",
            str(glb),
            "-o",
            str(out),
            "--size",
            "1024",
            "--samples",
            "4096",
            "--timeout",
            "3",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: timeout: Blender did not finish in 3 s")
    assert not out.exists() and blender_processes(str(out)) == []


def test_terminating_the_caller_stops_blender_and_leaves_nothing(tmp_path, glb):
    out = tmp_path / "cancelled.png"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "automat_pipeline.cli",
            "render",
            "thumbnail",
            str(glb),
            "-o",
            str(out),
            "--size",
            "1024",
            "--samples",
            "4096",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not blender_processes(str(out)):
        assert time.monotonic() < deadline and cli.poll() is None, "Blender never started"
        time.sleep(0.2)
    time.sleep(1.0)  # let it render
    cli.terminate()
    code, stderr = cli.wait(timeout=30), cli.stderr.read()
    assert code == 130 and "error: interrupted" in stderr, stderr[-2000:]
    assert blender_processes(str(out)) == [] and not out.exists()


def video_frames(path) -> int:
    """Frame count as Blender's own FFmpeg reads it back (the render environment)."""
    probe = "import bpy, sys; print('FRAMES', bpy.data.movieclips.load(sys.argv[1]).frame_duration)"
    done = subprocess.run(
        [str(REPO / ".venv-render" / "bin" / "python"), "-c", probe, str(path)], capture_output=True, text=True
    )
    return int(next(line for line in done.stdout.splitlines() if line.startswith("FRAMES")).split()[1])


def test_turntable_is_an_mp4_with_every_frame(tmp_path, glb):
    out = tmp_path / "turn.mp4"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "automat_pipeline.cli",
            "render",
            "turntable",
            str(glb),
            "-o",
            str(out),
            "--size",
            "64",
            "--frames",
            "4",
            "--samples",
            "4",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["frames"] == 4 and result["output_bytes"] == out.stat().st_size
    assert out.read_bytes()[4:8] == b"ftyp" and video_frames(out) == 4


def test_parts_outside_the_library_get_the_fallback_material(tmp_path, glb):
    """The viewer GLB's CAD colours are not library materials: every part renders as the fallback."""
    library = {
        "fallback": "Alarm-Green",
        "materials": {"Alarm-Green": {"base_color": [0.0, 1.0, 0.0], "metallic": 0.0, "roughness": 0.5}},
    }
    (tmp_path / "library.json").write_text(json.dumps(library))
    out = tmp_path / "t.png"
    done = subprocess.run(
        [
            str(REPO / ".venv-render" / "bin" / "python"),
            str(REPO / "blender" / "render.py"),
            "--",
            str(glb),
            str(out),
            "--size",
            "48",
            "--engine",
            "workbench",
            "--materials",
            str(tmp_path / "library.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[MATERIAL] part 'nut_1': 'mat_" in done.stderr and "→ 'Alarm-Green'" in done.stderr
    rgba = np.asarray(Image.open(out)).astype(int)
    model = rgba[rgba[..., 3] > 200]
    assert len(model) > 100 and (model[:, 1] > model[:, 0] + 40).mean() > 0.9  # green, however lit


def test_blenders_progress_reaches_the_caller(tmp_path, glb):
    """The percentages Blender reports while it renders (what an order line's progress shows)."""
    from automat_pipeline.blender import blender_command, render_args, run_blender
    from automat_pipeline.output_types import OutputType

    still = OutputType(name="p", kind="still", resolution=48, samples=8, engine="cycles")
    seen: list[int] = []
    command = blender_command(
        str(REPO / ".venv-render" / "bin" / "python"),
        str(REPO / "blender"),
        render_args(glb, tmp_path / "p.png", still),
    )
    run_blender(command, output=tmp_path / "p.png", on_progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 100 and len(seen) >= 2, seen
