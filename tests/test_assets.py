"""The assets materialized for one partition on a real ephemeral instance, real PostgreSQL,
the real converter and a real (small) Blender render."""

import shutil
import subprocess
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from openpyxl import Workbook, load_workbook
from PIL import Image
from sqlalchemy import select

from automat_pipeline.assets import blend_export, catalog_report, convert_step, product_catalog, still, step_file, thumbnail, turntable
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import MaterialAlias, Product, ProductFile, TenantMaterial, TenantOutputType
from automat_pipeline.partitions import product_partitions, tenant_partitions
from automat_pipeline.resources import Blender, Database, MediaStore
from conftest import STEP_FIXTURES

CATALOG = [product_catalog, catalog_report]
MEDIA = [step_file, convert_step, thumbnail]


@pytest.fixture
def resources(env):
    return {
        "database": Database(url=env["AUTOMAT_DATABASE_URL"]),
        "media": MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"]),
        "blender": Blender(executable=env["AUTOMAT_BLENDER"], scripts_dir=env["AUTOMAT_BLENDER_SCRIPTS"]),
    }


TINY_OUTPUT_TYPES = {  # the tenant overrides the shipped output types: small, fast renders
    "thumbnail": {"kind": "thumbnail", "resolution": 64, "samples": 4},
    "still-web": {"kind": "still", "resolution": 48, "samples": 2, "camera": "front"},
    "turntable-web": {"kind": "turntable", "resolution": 64, "samples": 2, "frames": 3, "transparent": False},
}


def acme(database_url: str):
    with session(database_url) as s, s.begin():
        tenant = repository.tenant(s, "acme")
        if not s.scalars(select(TenantOutputType)).first():
            s.add_all(TenantOutputType(tenant_id=tenant.id, name=n, settings=v) for n, v in TINY_OUTPUT_TYPES.items())


@pytest.fixture
def tenant_inbox(env):
    acme(env["AUTOMAT_DATABASE_URL"])
    inbox = Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme"
    inbox.mkdir(parents=True)
    wb = Workbook()
    for row in (["Sachnummer", "Produktname", "CAD-Datei"], ["AS1", "Assembly", "as1-oc-214.stp"],
                ["FEA", "Analysis model", "ATS1-out.stp"], ["GONE", "No file", None], [None, "no id", None]):
        wb.active.append(row)
    wb.save(inbox / "products.xlsx")
    shutil.copyfile(STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp", inbox / "as1-oc-214.stp")
    shutil.copyfile(STEP_FIXTURES / "stepcode" / "ATS1-out.stp", inbox / "ATS1-out.stp")
    return inbox


def metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(asset)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_catalogue_import_registers_products(env, resources, tenant_inbox):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])
    result = materialize(CATALOG,
                         partition_key="acme", instance=instance, resources=resources)
    assert result.success
    meta = metadata(result, "product_catalog")
    assert (meta["created"], meta["rejected"], meta["products"]) == (3, 1, 3)
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]
    [report] = metadata(result, "catalog_report")["reports"].values()
    rows = list(load_workbook(report, read_only=True).active.iter_rows(values_only=True))
    assert rows[0][-2:] == ("Status", "Reason") and [r[-2] for r in rows[1:]] == ["imported"] * 3 + ["rejected"]
    assert sorted(instance.get_dynamic_partitions(product_partitions.name)) == ["acme|AS1", "acme|FEA", "acme|GONE"]
    again = materialize(CATALOG, partition_key="acme", instance=instance, resources=resources)
    assert (metadata(again, "product_catalog")["created"], metadata(again, "product_catalog")["unchanged"]) == (0, 3)
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        assert s.scalar(select(Product.step_filename).where(Product.pim_id == "AS1")) == "as1-oc-214.stp"


@pytest.fixture
def imported(env, resources, tenant_inbox):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])
    assert materialize(CATALOG, partition_key="acme", instance=instance, resources=resources).success
    return instance


@pytest.mark.slow
def test_chain_for_one_product(env, resources, imported):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # the tenant's own material and alias
        tenant = repository.tenant(s, "acme")
        s.add(TenantMaterial(tenant_id=tenant.id, name="ACME_Zinc", base_color=[0.7, 0.7, 0.72], metallic=1.0,
                             roughness=0.4))
        s.add(MaterialAlias(tenant_id=tenant.id, pattern="nut*", material_name="ACME_Zinc"))
    result = materialize(MEDIA, partition_key="acme|AS1", instance=imported, resources=resources)
    assert result.success
    assert metadata(result, "cad_metadata")["parts"] == 18
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert all(checks[name].passed for name in ("glb_loads", "part_count", "bbox_matches"))
    coverage = checks["material_coverage"]  # bolts, rods, brackets and the plate have no rule: a warning
    assert not coverage.passed and coverage.severity.value == "WARN"
    assert "nut_1" not in coverage.metadata["fallback_parts"].value and "rod_1" in coverage.metadata["fallback_parts"].value
    production = metadata(result, "glb_production")
    assert "[MATERIAL] part 'nut_1' → 'ACME_Zinc' (alias match, pattern 'nut*')" in production["materials"]
    assert "[MATERIAL] part 'rod_1' → 'SCHAEFFLER_059999_FailedMaterial' (fallback, no rule matched)" in production["materials"]
    glb = metadata(result, "glb_geometry")
    assert glb["triangles"] > 1000 and Path(glb["path"]).stat().st_size == glb["bytes"]
    renders = materialize([still, turntable, blend_export], partition_key="acme|AS1", instance=imported,
                          resources=resources)
    scene = metadata(renders, "blend_export")
    assert Path(scene["path"]).stat().st_size == scene["output_bytes"] and scene["camera"] == "front"
    probe = ("import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); s = bpy.context.scene; "
             "print('SCENE', s.camera.name, s.render.engine, len([o for o in s.objects if o.type == 'MESH']))")
    opened = subprocess.run([env["AUTOMAT_BLENDER"], "-c", probe, scene["path"]], capture_output=True, text=True)
    assert "SCENE Camera CYCLES 18" in opened.stdout, opened.stdout[-500:] + opened.stderr[-500:]
    [movie] = metadata(renders, "turntable")["outputs"].values()
    assert movie["frames"] == 3 and Path(movie["path"]).stat().st_size == movie["output_bytes"]
    [image] = metadata(renders, "still")["outputs"].values()
    assert image["camera"] == "front" and Image.open(image["path"]).size == (48, 48)
    render_logs = [e.user_message for e in imported.all_logs(renders.run_id) if e.user_message]
    assert any(m.startswith("[turntable] 100% (3/3 frames)") for m in render_logs)
    logs = [e.user_message for e in imported.all_logs(result.run_id) if e.user_message]
    assert any(m.startswith("[GPU_PROBE] No GPU found, falling back to CPU") for m in logs)
    assert any(m.startswith("[thumbnail] 100% (4/4 samples)") for m in logs)  # progress streamed via Pipes
    thumb = metadata(result, "thumbnail")
    assert thumb["engine"] == "cycles" and thumb["backend"] == "CPU" and thumb["seconds"] > 0
    assert Image.open(thumb["path"]).size == (64, 64)
    assert thumb["preview"].startswith("![thumbnail](data:image/png;base64,")
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        [record] = s.scalars(select(ProductFile).where(ProductFile.kind == "step")).all()
        assert (record.filename, record.status, record.error) == ("as1-oc-214.stp", "ok", None)


def test_bad_workbook_fails_the_check_and_the_rest_imports(env, resources, tenant_inbox):
    (tenant_inbox / "zzz-broken.xlsx").write_bytes(b"PK\x03\x04 truncated")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])
    result = materialize(CATALOG, partition_key="acme", instance=instance, resources=resources)
    assert metadata(result, "product_catalog")["created"] == 3
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.metadata["failed"].value == {
        "zzz-broken.xlsx": "corrupt_zip: zzz-broken.xlsx is a damaged zip container: File is not a zip file"}
    assert (tenant_inbox / "zzz-broken.xlsx").is_file()


def test_bad_step_fails_loudly_is_recorded_and_kept(env, resources, imported, tenant_inbox):
    result = materialize(MEDIA, partition_key="acme|FEA", instance=imported, resources=resources,
                         raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "unsupported_schema" in failure.step_failure_data.user_failure_data.description
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        [record] = s.scalars(select(ProductFile).where(ProductFile.kind == "step")).all()
        assert record.status == "rejected" and record.error.startswith("unsupported_schema: ")
    assert (tenant_inbox / "ATS1-out.stp").is_file()


def test_product_without_upload_names_the_missing_file(resources, imported):
    result = materialize([step_file], partition_key="acme|GONE", instance=imported, resources=resources,
                         raise_on_error=False)
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith("missing_step_file: no STEP upload for GONE")


def test_render_failure_names_blenders_reason(env, resources):
    acme(env["AUTOMAT_DATABASE_URL"])
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "BROKEN"
    folder.mkdir(parents=True)
    (folder / "production.glb").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(40))  # header promises more bytes
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(product_partitions.name, ["acme|BROKEN"])
    result = materialize([thumbnail], partition_key="acme|BROKEN", instance=instance, resources=resources,
                         raise_on_error=False, selection=[AssetKey("thumbnail")])
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith("render_failed: ")
    assert "Bad GLB" in failure.step_failure_data.user_failure_data.description
    assert not (folder / "thumbnail.png").exists()
