"""The seams between layers: the API stays light, and the step graph it reads is the definitions'."""

import json
import subprocess
import sys

from conftest import STEP_FIXTURES

from automat_pipeline.workflows import STEP_GRAPH

HEAVY = ("OCP", "trimesh", "dagster", "dagster_pipes", "numpy", "openpyxl", "python_calamine")


def test_importing_the_api_leaves_the_pipeline_out():
    """The API's workers import neither OpenCascade, trimesh, Dagster nor the definitions."""
    probe = (
        "import sys; from automat_pipeline.api.app import create_app; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules} | set(sys.modules))))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "automat_pipeline.definitions" not in loaded and not any(
        m.startswith("automat_pipeline.defs") for m in loaded
    )


def test_a_run_worker_leaves_opencascade_to_its_conversions():
    """Loading the definitions (every run worker's start) imports no OpenCascade (1.2 s): only the
    conversions' forkserver does, and a conversion still works from there."""
    probe = (
        "import sys, tempfile; from pathlib import Path; import automat_pipeline.definitions; "
        "print('OCP' in sys.modules); from automat_pipeline.cad import convert_isolated; "
        "print(convert_isolated(Path(sys.argv[1]), Path(tempfile.mkdtemp()) / 'm.glb').triangles > 0); "
        "print('OCP' in sys.modules)"
    )
    step = STEP_FIXTURES / "cadquery" / "red_cube_blue_cylinder.step"
    lines = subprocess.run([sys.executable, "-c", probe, str(step)], capture_output=True, text=True, check=True)
    assert lines.stdout.split() == ["False", "True", "False"], lines.stderr[-2000:]


def test_the_step_graph_file_is_the_definitions_asset_graph():
    from automat_pipeline.defs.step_graph import describe

    assert json.loads(STEP_GRAPH.read_text()) == describe(), (
        "automat_pipeline/step_graph.json is stale: run `.venv/bin/python -m automat_pipeline.defs.step_graph`"
    )
