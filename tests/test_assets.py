"""The assets materialized for one partition on a real ephemeral instance, real PostgreSQL,
the real converter and a real (small) Blender render."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from multiprocessing import forkserver
from pathlib import Path

import numpy as np
import psutil
import pytest
import trimesh
from conftest import STEP_FIXTURES, blender_processes
from dagster import AssetKey, DagsterInstance, asset, build_sensor_context, materialize
from openpyxl import Workbook, load_workbook
from PIL import Image
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from automat_pipeline import opencascade, tags
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import (
    MaterialAlias,
    MediaAsset,
    Order,
    OrderLine,
    Product,
    ProductFile,
    Tenant,
    TenantMaterial,
    TenantOutputType,
)
from automat_pipeline.definitions import defs
from automat_pipeline.defs.cad.assets import cad_conversion, glb_export, step_file
from automat_pipeline.defs.catalog.assets import catalog_report, product_catalog
from automat_pipeline.defs.orders.sensor import order_lines
from automat_pipeline.defs.partitions import product_partitions, tenant_partitions
from automat_pipeline.defs.render.assets import blend_export, still, thumbnail, turntable
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.defs.uploads.sensor import _continue_failed_batches
from automat_pipeline.keys import tenant_of
from automat_pipeline.settings import deployment_limits

CATALOG = [product_catalog, catalog_report]
MEDIA = [step_file, cad_conversion, thumbnail]


@pytest.fixture
def resources(env):
    return {
        "database": Database(url=env["AUTOMAT_DATABASE_URL"]),
        "media": MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"]),
        "blender": Blender(executable=env["AUTOMAT_BLENDER"], scripts_dir=env["AUTOMAT_BLENDER_SCRIPTS"]),
    }


TINY_OUTPUT_TYPES = {  # the tenant overrides the shipped output types: small, fast renders
    "thumbnail": {"kind": "thumbnail", "resolution": 64, "samples": 4, "engine": "cycles"},
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
    for row in (
        ["Sachnummer", "Produktname", "CAD-Datei"],
        ["AS1", "Assembly", "as1-oc-214.stp"],
        ["FEA", "Analysis model", "ATS1-out.stp"],
        ["GONE", "No file", None],
        [None, "no id", None],
    ):
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
    result = materialize(CATALOG, partition_key="acme", instance=instance, resources=resources)
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
        s.add(
            TenantMaterial(
                tenant_id=tenant.id, name="ACME_Zinc", base_color=[0.7, 0.7, 0.72], metallic=1.0, roughness=0.4
            )
        )
        s.add(MaterialAlias(tenant_id=tenant.id, pattern="nut*", material_name="ACME_Zinc"))
    result = materialize(MEDIA, partition_key="acme|AS1", instance=imported, resources=resources)
    assert result.success
    assert metadata(result, "cad_metadata")["parts"] == 18
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert all(checks[name].passed for name in ("glb_loads", "part_count", "bbox_matches"))
    coverage = checks["material_coverage"]  # bolts, rods, brackets and the plate have no rule: a warning
    assert not coverage.passed and coverage.severity.value == "WARN"
    assert (
        "nut_1" not in coverage.metadata["fallback_parts"].value
        and "rod_1" in coverage.metadata["fallback_parts"].value
    )
    production = metadata(result, "glb_production")
    assert "[MATERIAL] part 'nut_1' → 'ACME_Zinc' (alias match, pattern 'nut*')" in production["materials"]
    assert (
        "[MATERIAL] part 'rod_1' → 'SCHAEFFLER_059999_FailedMaterial' (fallback, no rule matched)"
        in production["materials"]
    )
    glb = metadata(result, "glb_geometry")
    assert glb["triangles"] > 1000 and Path(glb["path"]).stat().st_size == glb["bytes"]
    renders = materialize(
        [still, turntable, blend_export], partition_key="acme|AS1", instance=imported, resources=resources
    )
    scene = metadata(renders, "blend_export")
    assert Path(scene["path"]).stat().st_size == scene["output_bytes"] and scene["camera"] == "front"
    probe = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); s = bpy.context.scene; "
        "print('SCENE', s.camera.name, s.render.engine, len([o for o in s.objects if o.type == 'MESH']))"
    )
    opened = subprocess.run([env["AUTOMAT_BLENDER"], "-c", probe, scene["path"]], capture_output=True, text=True)
    assert "SCENE Camera CYCLES 19" in opened.stdout, opened.stdout[-500:] + opened.stderr[-500:]  # 18 parts, ground
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
    assert thumb["materials"] == {"ACME_Zinc": 8, "SCHAEFFLER_059999_FailedMaterial": 10}  # Blender used the library
    records = media_assets(env["AUTOMAT_DATABASE_URL"])
    assert {key: r.status for key, r in records.items()} == {
        ("thumbnail", "thumbnail"): "completed",
        ("still", "still-web"): "completed",
        ("turntable", "turntable-web"): "completed",
        ("blend_export", "still-web"): "completed",
        ("glb_geometry", "standard"): "completed",  # the GLBs are media too
        ("glb_production", "standard"): "completed",
    }
    assert records[("turntable", "turntable-web")].details["frames"] == 3
    assert records[("glb_production", "standard")].path.endswith("AS1/production.glb")
    assert records[("glb_geometry", "standard")].details["triangles"] == metadata(result, "glb_geometry")["triangles"]
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
        "zzz-broken.xlsx": "corrupt_zip: zzz-broken.xlsx is a damaged zip container: File is not a zip file"
    }
    assert (tenant_inbox / "zzz-broken.xlsx").is_file()


def test_bad_step_fails_loudly_is_recorded_and_kept(env, resources, imported, tenant_inbox):
    result = materialize(MEDIA, partition_key="acme|FEA", instance=imported, resources=resources, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "cad_conversion"  # a readable STEP file: its content decides
    assert "no_geometry: ATS1-out.stp (schema AP209" in failure.step_failure_data.user_failure_data.description
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        [record] = s.scalars(select(ProductFile).where(ProductFile.kind == "step")).all()
        assert record.status == "rejected" and record.error.startswith("no_geometry: ATS1-out.stp (schema AP209")
    assert (tenant_inbox / "ATS1-out.stp").is_file()


def test_product_without_upload_names_the_missing_file(resources, imported):
    result = materialize(
        [step_file], partition_key="acme|GONE", instance=imported, resources=resources, raise_on_error=False
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith(
        "missing_step_file: no STEP upload for GONE"
    )


def media_assets(database_url: str) -> dict[tuple[str, str], MediaAsset]:
    with session(database_url) as s:
        return {(m.asset, m.output_type): m for m in s.scalars(select(MediaAsset))}


def test_render_failure_names_blenders_reason_and_is_recorded(env, resources, imported):
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "GONE"
    folder.mkdir(parents=True)
    (folder / "production.glb").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(40))  # header promises more bytes
    result = materialize(
        [thumbnail],
        partition_key="acme|GONE",
        instance=imported,
        resources=resources,
        raise_on_error=False,
        selection=[AssetKey("thumbnail")],
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith("render_failed: ")
    assert "Bad GLB" in failure.step_failure_data.user_failure_data.description
    assert not (folder / "thumbnail.png").exists()
    record = media_assets(env["AUTOMAT_DATABASE_URL"])[("thumbnail", "thumbnail")]
    assert (record.status, record.error_class, record.run_id) == ("failed", "render_failed", result.run_id)
    assert "Bad GLB" in record.reason and record.path is None


def set_output_type(database_url: str, name: str, **settings) -> None:
    with session(database_url) as s, s.begin():
        s.query(TenantOutputType).filter_by(name=name).update({"settings": settings})


@pytest.fixture
def converted(env, imported):
    """AS1's production GLB in place, as glb_production leaves it."""
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "AS1"
    folder.mkdir(parents=True)
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        tenant = repository.tenant(s, "acme", create=False)
        resolver = repository.material_resolver(s, tenant, repository.product(s, tenant.id, "AS1"))
    opencascade.convert_step(
        STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp",
        folder / "model.glb",
        resolver=resolver,
        production_path=folder / "production.glb",
    )
    return folder


def test_missing_template_fails_before_blender_starts(env, resources, imported, converted):
    set_output_type(env["AUTOMAT_DATABASE_URL"], "still-web", kind="still", template="nowhere.blend")
    result = materialize(
        [still],
        partition_key="acme|AS1",
        instance=imported,
        resources=resources,
        raise_on_error=False,
        selection=[AssetKey("still")],
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith(
        "missing_template: output type 'still-web' names nowhere.blend, which is not in "
    )
    record = media_assets(env["AUTOMAT_DATABASE_URL"])[("still", "still-web")]
    assert (record.status, record.error_class) == ("failed", "missing_template")


def test_a_thumbnail_the_tenant_may_not_render_fails_before_blender_starts(env, resources, imported, converted):
    """The upload sensor's thumbnails ask the same policy as orders: this tenant renders Workbench only."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        repository.tenant(s, "acme").settings = {"render_engines_allowed": ["workbench"]}
    result = materialize(
        [thumbnail],
        partition_key="acme|AS1",
        instance=imported,
        resources=resources,
        raise_on_error=False,
        selection=[AssetKey("thumbnail")],
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == (
        "engine_not_allowed: output type 'thumbnail' renders with cycles; this tenant allows workbench"
    )
    record = media_assets(env["AUTOMAT_DATABASE_URL"])[("thumbnail", "thumbnail")]
    assert (record.status, record.error_class) == ("failed", "engine_not_allowed")


@pytest.mark.slow
def test_tenant_template_scene_lights_the_still(env, resources, imported, converted):
    templates = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "_templates"
    templates.mkdir(parents=True)
    make = (
        "import bpy, sys; bpy.ops.wm.read_factory_settings(use_empty=True); s = bpy.context.scene; "
        "w = bpy.data.worlds.new('Red'); w.node_tree.nodes['Background'].inputs['Color'].default_value = "
        "(1, 0, 0, 1); s.world = w; l = bpy.data.objects.new('Key', bpy.data.lights.new('Key', 'SUN')); "
        "s.collection.objects.link(l); s.view_settings.view_transform = 'Standard'; "
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])"
    )
    subprocess.run([env["AUTOMAT_BLENDER"], "-c", make, str(templates / "red.blend")], check=True, capture_output=True)
    set_output_type(
        env["AUTOMAT_DATABASE_URL"],
        "still-web",
        kind="still",
        resolution=32,
        samples=2,
        transparent=False,
        template="red.blend",
    )
    result = materialize(
        [still], partition_key="acme|AS1", instance=imported, resources=resources, selection=[AssetKey("still")]
    )
    [image] = metadata(result, "still")["outputs"].values()
    assert image["lighting"] == "template (1 lights, world Red)"
    rgb = np.asarray(Image.open(image["path"]).convert("RGB")).astype(int)
    red = (rgb[..., 0] > 240) & (rgb[..., 1] < 30) & (rgb[..., 2] < 30)
    assert red.mean() > 0.2  # the template's world and colour management ("Standard"), not the studio's
    record = media_assets(env["AUTOMAT_DATABASE_URL"])[("still", "still-web")]
    assert (record.status, record.path, record.details["lighting"]) == ("completed", image["path"], image["lighting"])


CANCELLED_RUN = """
import sys
from dagster import DagsterInstance, materialize
from automat_pipeline import cad
from automat_pipeline.defs.render.assets import still
from automat_pipeline.definitions import defs
instance = DagsterInstance.ephemeral()
instance.add_dynamic_partitions("products", ["acme|AS1"])
materialize([still], partition_key="acme|AS1", instance=instance, resources=defs.resources)
"""


@pytest.mark.slow
def test_terminated_render_stops_blender_removes_output_and_is_recorded_cancelled(env, resources, imported, converted):
    set_output_type(env["AUTOMAT_DATABASE_URL"], "still-web", kind="still", resolution=1024, samples=4096)
    run = subprocess.Popen(
        [sys.executable, "-c", CANCELLED_RUN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "AUTOMAT_MAX_RENDER_SAMPLES": "4096"},  # a render long enough to stop
    )
    output = str(converted / "still-still-web.png")
    marker = str(converted.parent / ".partial")  # Blender writes under the run's .partial folder until whole
    deadline = time.monotonic() + 120
    while not blender_processes(marker):
        assert time.monotonic() < deadline and run.poll() is None, "Blender never started"
        time.sleep(0.2)
    time.sleep(1.0)  # let it render
    run.send_signal(signal.SIGINT)  # what terminating a Dagster run does to its run worker
    run.wait(timeout=60)
    assert blender_processes(marker) == [] and not Path(output).exists()
    assert not list((converted.parent / ".partial").glob("**/*.png"))
    record = media_assets(env["AUTOMAT_DATABASE_URL"])[("still", "still-web")]
    assert (record.status, record.reason) == ("cancelled", "the run was terminated while Blender rendered")


@pytest.mark.slow
def test_thumbnail_backfill_is_one_run_that_reports_each_failure(env, resources, imported, converted):
    broken = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "GONE"
    broken.mkdir(parents=True)
    (broken / "production.glb").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(40))
    result = materialize(
        [thumbnail],
        instance=imported,
        resources=resources,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": "acme|AS1", "dagster/asset_partition_range_end": "acme|GONE"},
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("thumbnails_failed: 2 of 3 thumbnails failed: acme|FEA: missing_input: ")
    assert "acme|GONE: render_failed: " in description and "Bad GLB" in description
    assert Image.open(converted / "thumbnail.png").size == (64, 64)
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        outcomes = {
            key: status
            for key, status in s.execute(
                select(Product.key, MediaAsset.status).join(MediaAsset, MediaAsset.product_id == Product.id)
            )
        }
    assert outcomes == {"AS1": "completed", "GONE": "failed"}  # FEA never reached Blender
    assert imported.get_materialized_partitions(AssetKey("thumbnail")) == {"acme|AS1"}


def test_order_lines_keep_what_their_runs_came_to(env, resources, imported, converted):
    """The ``order_lines`` sensor writes each line's outcome from its run: the outputs of a completed
    one, the class and reason of a failed one; a second look changes nothing."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant = repository.tenant(s, "acme", create=False)
        order = Order(tenant_id=tenant.id, number="ORD-2026-000001", status="submitted")
        s.add(order)
        s.flush()
        products = {p.key: p.id for p in s.scalars(select(Product))}
        lines = {
            key: OrderLine(
                tenant_id=tenant.id,
                order_id=order.id,
                product_id=products[key],
                output_type="thumbnail",
                state="queued",
            )
            for key in ("AS1", "FEA")
        }
        s.add_all(lines.values())
        s.flush()
        line_ids = {key: line.id for key, line in lines.items()}
    runs = {}
    for key, line_id in line_ids.items():
        result = materialize(
            [thumbnail],
            partition_key=f"acme|{key}",
            instance=imported,
            resources=resources,
            tags={tags.ORDER: "1", tags.ORDER_LINE: str(line_id)},
            raise_on_error=False,
        )
        runs[key] = result.run_id
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        for key, line_id in line_ids.items():
            s.get(OrderLine, line_id).run_id = runs[key]  # as the launcher records it
    sensor_resources = {"database": resources["database"], "media": resources["media"]}
    context = build_sensor_context(instance=imported, resources=sensor_resources)
    order_lines(context)
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        done, failed = (s.get(OrderLine, line_ids[key]) for key in ("AS1", "FEA"))
        [thumbnail_media] = s.scalars(select(MediaAsset).where(MediaAsset.run_id == runs["AS1"]))
    assert (done.state, done.error_class, done.seconds > 0) == ("completed", None, True)
    assert [o["media_id"] for o in done.outputs] == [thumbnail_media.id] and "output" not in done.outputs[0]["details"]
    assert (failed.state, failed.error_class) == ("failed", "missing_input")
    assert "materialize glb_production first" in failed.reason and failed.outputs == []
    again = order_lines(build_sensor_context(instance=imported, cursor=context.cursor, resources=sensor_resources))
    assert again.skip_message.startswith("0 order lines changed")


def test_glb_deliverables_at_their_quality_leave_the_standard_one_alone(env, resources, imported, converted):
    shutil.copyfile(STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp", converted / "source.step")
    standard = (converted / "production.glb").read_bytes()
    result = materialize(
        [glb_export],
        partition_key="acme|AS1",
        instance=imported,
        resources=resources,
        run_config={"ops": {"glb_export": {"config": {"output_types": ["glb", "glb-fine"]}}}},
    )
    assert result.success
    records = media_assets(env["AUTOMAT_DATABASE_URL"])
    plain, fine = records[("glb_export", "glb")], records[("glb_export", "glb-fine")]
    assert plain.path == str(converted / "production.glb") and plain.details["quality"] == "standard"
    assert fine.path == str(converted / "glb-glb-fine.glb") and fine.run_id == result.run_id
    fine_triangles = sum(len(g.faces) for g in trimesh.load(fine.path, force="scene").geometry.values())
    standard_triangles = sum(len(g.faces) for g in trimesh.load(plain.path, force="scene").geometry.values())
    assert fine_triangles == fine.details["triangles"] > standard_triangles
    assert (converted / "production.glb").read_bytes() == standard  # the standard GLB is left alone


@pytest.mark.slow
def test_a_batch_goes_on_past_bad_files_and_the_sensor_continues_it(env, resources, imported):
    """A range run: step_file fails for the refused and the missing upload, materializes the good one
    and names the others; the upload sensor then requests the rest of the chain for the good one."""
    (Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme" / "ATS1-out.stp").write_bytes(b"ISO-10303-21;\nHEADER;\n")  # cut off
    batch = {"dagster/asset_partition_range_start": "acme|AS1", "dagster/asset_partition_range_end": "acme|GONE"}
    media = defs.resolve_job_def("product_media")
    result = media.execute_in_process(instance=imported, raise_on_error=False, tags=batch)
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "step_file"
    assert failure.step_failure_data.user_failure_data.description.startswith("step_files_failed: 2 of 3 STEP files")
    assert imported.get_materialized_partitions(AssetKey("step_file")) == {"acme|AS1"}
    [request] = _continue_failed_batches(build_sensor_context(instance=imported), 0)
    assert request.partition_key == "acme|AS1"
    assert [k.to_user_string() for k in request.asset_selection] == [
        "cad_metadata",
        "glb_geometry",
        "glb_production",
        "thumbnail",
    ]
    rest = media.execute_in_process(
        instance=imported, partition_key=request.partition_key, asset_selection=request.asset_selection
    )
    assert rest.success and imported.get_materialized_partitions(AssetKey("thumbnail")) == {"acme|AS1"}
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        files = {f.filename: f.status for f in s.scalars(select(ProductFile).where(ProductFile.kind == "step"))}
    assert files == {"as1-oc-214.stp": "ok", "ATS1-out.stp": "rejected"}


def test_a_runs_unfiltered_query_sees_only_its_partitions_tenant(env, resources, imported):
    """Row-level security binds the pipeline's steps too (migration 0020): an asset that forgets its
    tenant filter reads, writes and counts its own tenant's rows only, and no account secrets."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        beta = repository.tenant(s, "beta")
        s.add(Product(tenant_id=beta.id, pim_id="B-1", key="B-1", name="beta's secret bearing"))
    seen = {}

    @asset(partitions_def=product_partitions)
    def careless(context, database: Database) -> None:
        with database.session(tenant_of(context.partition_key)) as s:
            seen["names"] = sorted(s.scalars(text("SELECT name FROM products")))  # no tenant filter
            seen["tenants"] = sorted(s.scalars(text("SELECT slug FROM tenants")))
            seen["moved"] = s.execute(text("UPDATE products SET name = name || ' (touched)'")).rowcount
            with pytest.raises(ProgrammingError, match="permission denied for table users"):
                with s.begin_nested():
                    s.execute(text("SELECT password_hash FROM users"))

    assert materialize([careless], partition_key="acme|AS1", instance=imported, resources=resources).success
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        acme_names = sorted(s.scalars(select(Product.name).join(Tenant).where(Tenant.slug == "acme")))
        beta_name = s.scalar(select(Product.name).where(Product.pim_id == "B-1"))
    assert seen["names"] == sorted(n.removesuffix(" (touched)") for n in acme_names) and "beta's" not in str(seen)
    assert seen["tenants"] == ["acme"] and seen["moved"] == len(acme_names)
    assert beta_name == "beta's secret bearing"  # untouched


@pytest.fixture
def screws(resources, tenant_inbox):
    """Four products M1..M4 imported, each naming the same M6 screw's STEP file; the instance."""
    book = Workbook()
    book.active.append(["Sachnummer", "Produktname", "CAD-Datei"])
    for n in range(1, 5):
        book.active.append([f"M{n}", f"Screw {n}", "m6.step"])
    book.save(tenant_inbox / "products.xlsx")
    shutil.copyfile(STEP_FIXTURES / "build123d" / "M6-1x12-countersunk-screw.step", tenant_inbox / "m6.step")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])
    assert materialize(CATALOG, partition_key="acme", instance=instance, resources=resources).success
    return instance


def test_a_batch_converts_its_products_on_every_core(env, resources, screws, monkeypatch, request):
    """A batch run makes AUTOMAT_CONVERSIONS_AT_ONCE conversions at a time, each in its own isolated
    process (the forkserver's children, watched from here), and each product still gets its own
    GLBs, metadata and record."""
    monkeypatch.setenv("AUTOMAT_CONVERSIONS_AT_ONCE", "2")
    deployment_limits.cache_clear()
    request.addfinalizer(deployment_limits.cache_clear)
    peak, done = 0, threading.Event()

    def watch() -> None:  # how many conversions run at once
        nonlocal peak
        while not done.is_set():
            server = forkserver._forkserver._forkserver_pid
            with contextlib.suppress(psutil.NoSuchProcess, ValueError):
                peak = max(peak, len(psutil.Process(server).children()) if server else 0)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        batch = {"dagster/asset_partition_range_start": "acme|M1", "dagster/asset_partition_range_end": "acme|M4"}
        result = materialize([step_file, cad_conversion], instance=screws, resources=resources, tags=batch)
    finally:
        done.set()
        watcher.join()
    assert result.success and peak == 2
    media = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme"
    triangles = {json.loads((media / f"M{n}" / "cad_metadata.json").read_text())["triangles"] for n in range(1, 5)}
    assert len(triangles) == 1 and triangles.pop() > 1000  # the same file, converted four times alike
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        made = s.execute(
            select(Product.pim_id, MediaAsset.path).join(MediaAsset).where(MediaAsset.asset == "glb_production")
        ).all()
    assert sorted(made) == [(f"M{n}", str(media / f"M{n}" / "production.glb")) for n in range(1, 5)]
    assert screws.get_materialized_partitions(AssetKey("glb_production")) == {f"acme|M{n}" for n in range(1, 5)}


TERMINATED_BATCH = """
from dagster import DagsterInstance, materialize
from automat_pipeline.definitions import defs
from automat_pipeline.defs.cad.assets import cad_conversion, step_file
instance = DagsterInstance.ephemeral()
instance.add_dynamic_partitions("products", [f"acme|M{n}" for n in range(1, 5)])
batch = {"dagster/asset_partition_range_start": "acme|M1", "dagster/asset_partition_range_end": "acme|M4"}
materialize([step_file, cad_conversion], instance=instance, resources=defs.resources, tags=batch)
"""


def conversions(run: subprocess.Popen) -> list[psutil.Process]:
    """The conversion children of a run worker's forkserver."""
    found = []
    for process in psutil.Process(run.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "forkserver" in " ".join(process.parent().cmdline()):
                found.append(process)
    return found


@pytest.mark.slow
def test_a_terminated_batch_run_stops_every_conversion_under_way(env, screws):
    """Terminating a batch run while two conversions run ends both at once, not when they are done,
    and converts none of the products that had not started."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # meshing this fine takes the screw ~10 s
        fine = {"relative_deflection": 0.000001, "min_deflection_mm": 0.0002, "angular_deflection": 0.05}
        repository.tenant(s, "acme", create=False).settings = {"cad": fine}
    run = subprocess.Popen(
        [sys.executable, "-c", TERMINATED_BATCH],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "AUTOMAT_CONVERSIONS_AT_ONCE": "2"},
    )
    deadline = time.monotonic() + 120
    while len(conversions(run)) < 2:
        assert time.monotonic() < deadline and run.poll() is None, "the batch never converted two at once"
        time.sleep(0.1)
    under_way = conversions(run)
    run.send_signal(signal.SIGINT)  # what terminating a Dagster run does to its run worker
    signalled = time.monotonic()
    gone, alive = psutil.wait_procs(under_way, timeout=5)
    assert alive == [] and time.monotonic() - signalled < 5, "the conversions ran on after the run was terminated"
    run.wait(timeout=60)
    media = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme"
    assert not any((media / f"M{n}" / "model.glb").exists() for n in range(1, 5))
