import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, Definitions

from automat_pipeline.definitions import defs
from automat_pipeline.embedded import REPO


def test_definitions_load_with_the_whole_graph():
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "product_catalog",
        "catalog_report",
        "step_file",
        "cad_metadata",
        "glb_geometry",
        "glb_production",
        "glb_export",
        "thumbnail",
        "still",
        "turntable",
        "blend_export",
    }
    assert graph.get(AssetKey("thumbnail")).parent_keys == {AssetKey("glb_production")}
    assert graph.get(AssetKey("glb_production")).parent_keys == {AssetKey("glb_geometry")}
    assert graph.get(AssetKey("glb_geometry")).parent_keys == {AssetKey("cad_metadata")}
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"import_catalog", "product_media", "product_renders"}


def test_dagster_cli_validates_the_code_location(tmp_path: Path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "All code locations passed validation" in done.stderr + done.stdout
