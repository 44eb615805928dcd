import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import trimesh
from conftest import STEP_FIXTURES

from automat_pipeline.bearings import CATALOGUE, write_step
from automat_pipeline.cad import convert_isolated, read_glb, sniff_step, write_glb, write_production_glb
from automat_pipeline.defs.cad.assets import check_glbs
from automat_pipeline.embedded import REPO
from automat_pipeline.errors import AutomatError
from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver
from automat_pipeline.opencascade import convert_step

SCREW = STEP_FIXTURES / "occt" / "screw.step"
VENDORED = Path(__file__).parent / "fixtures" / "step"  # real files ../shared/fixtures lacks (SOURCES.tsv)
sys.path.insert(0, str(REPO / "bench"))
import hostile_corpus  # noqa: E402 - bench/, where the hostile corpus is made


def test_sniff_accepts_mixed_case_keywords():
    assert "AUTOMOTIVE_DESIGN" in sniff_step(STEP_FIXTURES / "occt-pr946" / "bug31000_InSensitive.stp")


@pytest.mark.parametrize(
    "content,error_class",
    [
        (b"", "not_step"),
        (b"solid cube\nfacet normal 0 0 1\nendsolid\n", "not_step"),
        (lambda: SCREW.read_bytes()[:4000], "truncated"),  # read when run: the fixtures may be absent
    ],
)
def test_sniff_rejects_bad_files(tmp_path, content, error_class):
    path = tmp_path / "bad.step"
    path.write_bytes(content() if callable(content) else content)
    with pytest.raises(AutomatError) as error:
        sniff_step(path)
    assert error.value.error_class == error_class
    assert "bad.step" in error.value.reason


def test_real_ap203_edition_2_file_converts(tmp_path):
    """A CAx-IF AS1 assembly as a Theorem Solutions AP203 e2 preprocessor wrote it (from UG)."""
    path = VENDORED / "as1-tu-203.stp"
    result = convert_step(path, tmp_path / "as1.glb")
    assert result.schema.startswith("CONFIGURATION_CONTROL_3D_DESIGN_ED2_MIM_LF")
    assert (result.name, len(result.parts), result.solids, result.units) == ("as1", 18, 18, "millimetre")
    assert {"PLATE", "ROD", "BOLT", "L-BRACKET"} <= {p.name for p in result.parts}


# What real writers put in FILE_SCHEMA, AP203 ed1 to AP242 ed3 and AP209.
SCHEMAS = [
    "CONFIG_CONTROL_DESIGN",
    "CONFIGURATION_CONTROL_3D_DESIGN_ED2_MIM_LF { 1 0 10303 403 1 1 4}",
    "AP203_CONFIGURATION_CONTROLLED_3D_DESIGN_OF_MECHANICAL_PARTS_AND_ASSEMBLIES_MIM_LF { 1 0 10303 403 2 1 2}",
    "AUTOMOTIVE_DESIGN_CC2 { 1 2 10303 214 -1 1 5 4 }",
    "AUTOMOTIVE_DESIGN { 1 0 10303 214 3 1 1 }",
    "AP242_MANAGED_MODEL_BASED_3D_ENGINEERING_MIM_LF { 1 0 10303 442 1 1 4 }",
    "AP242_MANAGED_MODEL_BASED_3D_ENGINEERING_MIM_LF { 1 0 10303 442 3 1 4 }",
    "AP209_MULTIDISCIPLINARY_ANALYSIS_AND_DESIGN_MIM_LF { 1 0 10303 209 2 1 1 }",
    "STRUCTURAL_ANALYSIS_DESIGN",
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.split()[0])
def test_the_declared_schema_decides_nothing_the_geometry_does(tmp_path, schema):
    """A real part (OpenCascade 7.6, AP214) with only its FILE_SCHEMA changed converts under every schema."""
    original = (STEP_FIXTURES / "occt-pr946" / "bug31000_InSensitive.stp").read_bytes()
    derived = tmp_path / "part.stp"
    derived.write_bytes(re.sub(rb"(FILE_SCHEMA\s*\(\s*\(\s*')[^']*'", rb"\g<1>" + schema.encode() + b"'", original))
    assert sniff_step(derived) == schema
    result = convert_step(derived, tmp_path / "part.glb")
    assert result.schema == schema and result.faces == 6 and result.triangles == 12


def test_analysis_model_without_shape_geometry_is_no_geometry(tmp_path):
    """An AP209 finite-element model: nodes and elements, no B-rep; refused for its content."""
    with pytest.raises(AutomatError, match="AP209_MULTIDISCIPLINARY") as error:
        convert_step(STEP_FIXTURES / "stepcode" / "ATS1-out.stp", tmp_path / "fea.glb")
    assert error.value.error_class == "no_geometry"
    assert "contains no surfaces" in error.value.reason


def test_external_reference_assembly_without_geometry_is_refused(tmp_path):
    with pytest.raises(AutomatError) as error:
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
    assert (colours["Outer_Ring"], colours["Ball_1"]) == ("#b8bac2", "#8c8f99")
    assert colours["Cage"] == "#c79940"  # brass, written on each of the pieces the pockets cut apart
    outer = next(p for p in result.parts if p.name == "Outer_Ring")
    assert outer.bbox_mm[3] == pytest.approx(bearing.outer / 2, abs=0.01)


def test_unmeshable_face_is_damaged_geometry(tmp_path):
    """The cone of this Autodesk file reads fine but cannot be meshed: silent damage, refused."""
    with pytest.raises(AutomatError, match="1 of 5 faces could not be meshed") as error:
        convert_step(STEP_FIXTURES / "occt-import-js" / "conical-surface.step", tmp_path / "c.glb")
    assert error.value.error_class == "damaged_geometry"


def test_generic_writer_names_fall_back_to_the_file_name(tmp_path):
    result = convert_step(STEP_FIXTURES / "analysis-situs" / "gehause_rohteil.stp", tmp_path / "g.glb")
    assert result.name == "gehause_rohteil" and [p.name for p in result.parts] == ["gehause_rohteil"]
    assert "gehause_rohteil" in trimesh.load(tmp_path / "g.glb").graph.nodes


def test_a_pinned_copy_speaks_with_its_uploads_name(tmp_path):
    """The pipeline converts a copy pinned as source.step: names and reasons still come from the upload."""
    pinned = tmp_path / "source.step"
    pinned.write_bytes((STEP_FIXTURES / "analysis-situs" / "gehause_rohteil.stp").read_bytes())
    result = convert_isolated(pinned, tmp_path / "g.glb", name="gehause_rohteil.stp")
    assert result.name == "gehause_rohteil" and [p.name for p in result.parts] == ["gehause_rohteil"]
    pinned.write_bytes((STEP_FIXTURES / "stepcode" / "ATS1-out.stp").read_bytes())
    with pytest.raises(AutomatError, match=r"^no_geometry: ATS1-out\.stp \(schema AP209"):
        convert_isolated(pinned, tmp_path / "f.glb", name="ATS1-out.stp")


def test_production_glb_names_materials_after_the_library(tmp_path):
    resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES, {"Cage": "SCHAEFFLER_020201_Brass-Cage"})
    step = write_step(CATALOGUE[0], tmp_path / "b.step")
    result = convert_step(step, tmp_path / "v.glb", resolver=resolver, production_path=tmp_path / "p.glb")
    document, _ = read_glb(tmp_path / "p.glb")
    by_node = {
        n["name"]: document["materials"][document["meshes"][n["mesh"]]["primitives"][0]["material"]]
        for n in document["nodes"]
        if "mesh" in n
    }
    assert by_node["Outer_Ring"]["name"] == "SCHAEFFLER_010101_Steel-Bare"
    assert by_node["Ball_3"]["name"] == "SCHAEFFLER_010102_Steel-Polished"
    assert by_node["Cage"]["name"] == "SCHAEFFLER_020201_Brass-Cage"
    brass = next(m for m in LIBRARY if m.name == "SCHAEFFLER_020201_Brass-Cage")
    pbr = by_node["Cage"]["pbrMetallicRoughness"]
    assert pbr["baseColorFactor"][:3] == pytest.approx(list(brass.base_color), abs=1e-4)
    assert (pbr["metallicFactor"], pbr["roughnessFactor"]) == pytest.approx((brass.metallic, brass.roughness))
    assert "[MATERIAL] part 'Cage' → 'SCHAEFFLER_020201_Brass-Cage' (catalogue assignment)" in result.materials
    # The viewer GLB in library colours (the web viewer shows what the renders show), not the CAD
    # file's: the cage's CAD colour is #c79940, the rings' #b8bac2.
    assert (tmp_path / "v.glb").read_bytes() == (tmp_path / "p.glb").read_bytes()
    without_library = convert_step(step, tmp_path / "cad.glb")  # no library: CAD colours, as dielectrics
    cad_colours, _ = read_glb(tmp_path / "cad.glb")
    assert {m["pbrMetallicRoughness"]["metallicFactor"] for m in cad_colours["materials"]} == {0.0}
    assert without_library.triangles == result.triangles


def test_production_glb_splits_a_mesh_shared_by_parts_on_different_materials(tmp_path):
    convert_step(STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp", tmp_path / "v.glb")
    document, binary = read_glb(tmp_path / "v.glb")
    nut, rod = (next(n for n in document["nodes"] if n.get("name") == name) for name in ("nut_1", "rod_1"))
    rod["mesh"] = nut["mesh"]  # as a writer that shares meshes between instances would
    write_glb(tmp_path / "shared.glb", document, binary)
    steel, brass = (
        next(m for m in LIBRARY if m.name == name)
        for name in ("SCHAEFFLER_010101_Steel-Bare", "SCHAEFFLER_020201_Brass-Cage")
    )
    materials = {n["name"]: steel for n in document["nodes"] if "mesh" in n} | {"rod_1": brass}
    write_production_glb(tmp_path / "shared.glb", tmp_path / "p.glb", materials)
    production, _ = read_glb(tmp_path / "p.glb")
    on = {n["name"]: production["meshes"][n["mesh"]] for n in production["nodes"] if "mesh" in n}
    assert on["nut_1"]["primitives"][0]["indices"] == on["rod_1"]["primitives"][0]["indices"]
    assert [production["materials"][on[name]["primitives"][0]["material"]]["name"] for name in ("nut_1", "rod_1")] == [
        steel.name,
        brass.name,
    ]


@pytest.mark.slow
def test_an_assembly_nested_a_thousand_deep_converts_and_passes_its_checks(tmp_path):
    """Deeper than Python's recursion limit: the part walk and the GLB's bounding box must not recurse."""
    nested = tmp_path / "nested.step"
    nested.write_bytes(hostile_corpus.assembly(STEP_FIXTURES / "occt-pr946" / "bug31000_InSensitive.stp", depth=1000))
    result = convert_isolated(nested, tmp_path / "n.glb")
    assert [p.name for p in result.parts] == ["SOLID"] and result.faces == 6
    checks = {c.check_name: c.passed for c in check_glbs(result, tmp_path / "n.glb", [])}
    assert checks == {"glb_loads": True, "part_count": True, "bbox_matches": True, "material_coverage": True}


def test_isolated_conversion_limits_time_and_memory(tmp_path):
    big = STEP_FIXTURES / "analysis-situs" / "repatch-hpdc.stp"
    with pytest.raises(AutomatError) as slow:
        convert_isolated(big, tmp_path / "t.glb", timeout_seconds=0.05)
    assert slow.value.error_class == "timeout"
    with pytest.raises(AutomatError) as hungry:
        convert_isolated(big, tmp_path / "m.glb", memory_mb=64)
    assert hungry.value.error_class == "out_of_memory"
    ok = convert_isolated(SCREW, tmp_path / "s.glb")
    assert ok.triangles == convert_step(SCREW, tmp_path / "s2.glb").triangles


FREE_200_MB = """
import ctypes, sys, psutil
from automat_pipeline.cad import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
blocks = [libc.malloc(1 << 20) for _ in range(200)]
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)
before = psutil.Process().memory_info().rss
for block in blocks:
    libc.free(ctypes.c_void_p(block))
print(before - psutil.Process().memory_info().rss)
"""


def test_a_conversion_process_keeps_the_memory_it_frees():
    """What a conversion frees stays with its process for the next allocations (no page faults to
    take it back), where glibc would hand it back to the kernel at once."""
    returned = {
        mode: int(subprocess.run([sys.executable, "-c", FREE_200_MB, mode], capture_output=True, check=True).stdout)
        for mode in ("keep", "glibc")
    }
    assert returned["glibc"] > 150 << 20 and returned["keep"] < 10 << 20, returned


def test_a_child_gone_right_after_it_answered_is_no_crash(tmp_path, monkeypatch):
    """The child may answer and exit between two looks at its memory: its answer counts."""
    from automat_pipeline import cad

    def gone(pid):  # the look comes after the child answered and exited
        time.sleep(1.0)
        raise psutil.NoSuchProcess(pid)

    monkeypatch.setattr(cad.psutil, "Process", gone)
    assembly = STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp"
    assert convert_isolated(assembly, tmp_path / "a.glb").triangles > 0


EXPECTED_REFUSALS = {
    "s1-c5-214.stp": "no_geometry",  # CATIA external references only: the geometry is in other files
    "ATS1-out.stp": "no_geometry",  # AP209 finite-element model: no shapes
    "conical-surface.step": "damaged_geometry",  # a cone face OpenCascade cannot mesh
}


def test_part_names_beyond_ascii_keep_their_letters_in_both_glbs(tmp_path):
    """A part named "Käfig 軸受" (STEP's \\X2\\ escape): its name was written to the GLB as UTF-8 read
    as Latin-1, and the production GLB failed with a KeyError, classed damaged_geometry."""
    step = write_step(CATALOGUE[0], tmp_path / "b.step")
    step.write_bytes(step.read_bytes().replace(b"'Cage'", b"'K\\X2\\00E4\\X0\\fig \\X2\\8EF853D7\\X0\\'"))
    resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES, {"Käfig 軸受": "SCHAEFFLER_020201_Brass-Cage"})
    result = convert_step(step, tmp_path / "v.glb", resolver=resolver, production_path=tmp_path / "p.glb")
    assert "Käfig 軸受" in [p.name for p in result.parts]
    for glb in ("v.glb", "p.glb"):
        document, _ = read_glb(tmp_path / glb)
        assert "Käfig 軸受" in [n.get("name") for n in document["nodes"]], glb
    assert "[MATERIAL] part 'Käfig 軸受' → 'SCHAEFFLER_020201_Brass-Cage' (catalogue assignment)" in result.materials


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", sorted(p for d in (STEP_FIXTURES, VENDORED) for p in d.rglob("*") if p.is_file()), ids=lambda p: p.name
)
def test_every_fixture_converts_and_passes_the_checks_or_is_refused_with_its_class(tmp_path, path):
    resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES)
    try:
        result = convert_isolated(path, tmp_path / "v.glb", resolver=resolver, production_path=tmp_path / "p.glb")
    except AutomatError as error:
        assert error.error_class == EXPECTED_REFUSALS.get(path.name), str(error)
        return
    assert path.name not in EXPECTED_REFUSALS
    checks = {c.check_name: c for c in check_glbs(result, tmp_path / "v.glb", [])}
    assert all(checks[name].passed for name in ("glb_loads", "part_count", "bbox_matches")), {
        name: c.metadata for name, c in checks.items()
    }
    assert len(result.parts) >= 1 and all(p.name and p.material for p in result.parts)
    (viewer, viewer_binary), (production, production_binary) = (
        read_glb(tmp_path / "v.glb"),
        read_glb(tmp_path / "p.glb"),
    )
    assert production_binary == viewer_binary and len(production["nodes"]) == len(viewer["nodes"])
    material = {p.name: p.material for p in result.parts}  # every mesh node is a part, on its material
    assert all(
        production["materials"][primitive["material"]]["name"] == material[node["name"]]
        for node in production["nodes"]
        if "mesh" in node
        for primitive in production["meshes"][node["mesh"]]["primitives"]
    )
