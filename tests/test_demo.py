"""``automat demo`` from an empty AUTOMAT_HOME, twice: the second run repeats nothing."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fresh_home_env

from automat_pipeline.bearings import CATALOGUE
from automat_pipeline.embedded import REPO
from automat_pipeline.settings import Settings

pytestmark = pytest.mark.slow


def test_demo_runs_everything_once(tmp_path: Path):
    env = fresh_home_env(tmp_path / "home")
    demo = [str(Path(sys.executable).parent / "automat"), "demo"]

    first = subprocess.run(demo, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for bearing in CATALOGUE:
        row = next(line for line in first.stdout.splitlines() if line.startswith(bearing.pim_id))
        assert f"media/demo/{bearing.pim_id}/thumbnail.png" in row
        assert (tmp_path / "home" / "media" / "demo" / bearing.pim_id / "thumbnail.png").stat().st_size > 1000
    if Settings().fixtures_dir.is_dir():  # 3 real files convert, the AP209 model is refused
        assert "ERROR no_geometry: ATS1-out.stp" in first.stdout
        assert "\n4 runs this time (1 failed)" in first.stdout  # import, batch, the batch on both sides of it
    else:
        assert "\n2 runs this time (0 failed)" in first.stdout  # import, batch

    second = subprocess.run(demo, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "\n0 runs this time" in second.stdout
    table = [line for line in first.stdout.splitlines() if "media/" in line or "ERROR" in line]
    assert table == [line for line in second.stdout.splitlines() if "media/" in line or "ERROR" in line]
