import math

import numpy as np
import pytest
import trimesh

from automat_pipeline.bearings import CATALOGUE, write_step
from automat_pipeline.cad import convert_step, sniff_step
from automat_pipeline.errors import InputError
from conftest import STEP_FIXTURES

SCREW = STEP_FIXTURES / "occt" / "screw.step"


def test_sniff_accepts_mixed_case_keywords():
    assert "AUTOMOTIVE_DESIGN" in sniff_step(STEP_FIXTURES / "occt-pr946" / "bug31000_InSensitive.stp")


@pytest.mark.parametrize("content,error_class", [
    (b"", "empty_file"),
    (b"solid cube\nfacet normal 0 0 1\nendsolid\n", "not_step"),
    (SCREW.read_bytes()[:4000], "truncated_step"),
])
def test_sniff_rejects_bad_files(tmp_path, content, error_class):
    path = tmp_path / "bad.step"
    path.write_bytes(content)
    with pytest.raises(InputError) as error:
        sniff_step(path)
    assert error.value.error_class == error_class
    assert "bad.step" in error.value.reason


def test_sniff_rejects_analysis_schema():
    with pytest.raises(InputError, match="AP209") as error:
        sniff_step(STEP_FIXTURES / "stepcode" / "ATS1-out.stp")
    assert error.value.error_class == "unsupported_schema"


def test_external_reference_assembly_without_geometry_is_refused(tmp_path):
    with pytest.raises(InputError) as error:
        convert_step(STEP_FIXTURES / "occt-import-js" / "s1-c5-214.stp", tmp_path / "x.glb")
    assert error.value.error_class == "no_geometry"


def test_glb_keeps_names_and_is_in_metres_y_up(tmp_path):
    """Onshape file in metres with two named parts: GLB bbox must be the STEP bbox, mm → m, Z-up → Y-up."""
    result = convert_step(STEP_FIXTURES / "cadquery" / "red_cube_blue_cylinder.step", tmp_path / "m.glb")
    assert sorted(p.name for p in result.parts) == ["blue_cylinder", "red_cube"]
    scene = trimesh.load(tmp_path / "m.glb")
    assert sum(len(g.faces) for g in scene.geometry.values()) == result.triangles
    assert {"blue_cylinder", "red_cube"} <= set(scene.graph.nodes)
    xmin, ymin, zmin, xmax, ymax, zmax = (v / 1000 for v in result.bbox_mm)
    expected = np.array([[xmin, zmin, -ymax], [xmax, zmax, -ymin]])
    assert np.allclose(scene.bounds, expected, atol=2e-4)


def test_deflection_scales_with_model_size(tmp_path):
    small = convert_step(STEP_FIXTURES / "occt-pr946" / "bug31000_InSensitive.stp", tmp_path / "s.glb")
    large = convert_step(STEP_FIXTURES / "trimesh" / "base_interface_AP203.STEP", tmp_path / "l.glb")
    diagonal = math.dist(large.bbox_mm[:3], large.bbox_mm[3:])
    assert large.linear_deflection_mm == pytest.approx(min(5.0, diagonal * 0.001), rel=0.05)
    assert small.linear_deflection_mm == 0.01  # clamped: a 1×2×3 mm block


def test_generated_bearing_is_a_named_coloured_assembly(tmp_path):
    bearing = CATALOGUE[0]
    result = convert_step(write_step(bearing, tmp_path / "b.step"), tmp_path / "b.glb")
    names = [p.name for p in result.parts]
    balls = [n for n in names if n.startswith("Ball_")]
    assert {"Outer_Ring", "Inner_Ring", "Cage"} <= set(names) and len(balls) >= 6
    assert result.name == bearing.pim_id
    colours = {p.name: p.color for p in result.parts}
    assert colours["Outer_Ring"] != colours["Cage"] and colours["Ball_1"] is not None
    outer = next(p for p in result.parts if p.name == "Outer_Ring")
    assert outer.bbox_mm[3] == pytest.approx(bearing.outer / 2, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(p for p in STEP_FIXTURES.rglob("*") if p.is_file()), ids=lambda p: p.name)
def test_every_fixture_converts_or_is_refused_with_a_reason(tmp_path, path):
    try:
        result = convert_step(path, tmp_path / "out.glb")
    except InputError as error:
        assert error.error_class in {"unsupported_schema", "no_geometry"}
        return
    scene = trimesh.load(tmp_path / "out.glb")
    assert sum(len(g.faces) for g in scene.geometry.values()) == result.triangles > 0
    assert np.isfinite(scene.bounds).all()
    assert len(result.parts) >= 1 and all(p.name for p in result.parts)
