"""CAD assets per tenant|product: the validated STEP upload, its metadata, its viewer and production GLBs."""

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import trimesh
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from automat_pipeline.cad import Conversion, convert_isolated, read_glb, sniff_step, start_isolation
from automat_pipeline.db import repository
from automat_pipeline.defs.failures import batch_failure, classified, each_product, record_outcomes
from automat_pipeline.defs.partitions import product_partitions
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.errors import AutomatError
from automat_pipeline.inbox import sha256, step_file_for
from automat_pipeline.keys import tenant_of
from automat_pipeline.output_types import QUALITY_DEFLECTION, OutputType
from automat_pipeline.settings import deployment_limits
from automat_pipeline.step_params import RenderParams
from automat_pipeline.tenant_settings import CadSettings, TenantSettings

SOURCE = "source.step"


@asset(
    partitions_def=product_partitions,
    group_name="cad",
    kinds={"step"},
    code_version="1",
    backfill_policy=BackfillPolicy.single_run(),
)
def step_file(context: AssetExecutionContext, database: Database, media: MediaStore) -> MaterializeResult:
    """Each product's STEP upload, validated, hashed and pinned as ``source.step`` beside its media.

    A single product's data version is the file's sha256, so an unchanged re-upload leaves
    downstream fresh (a batch records the sha256 per product in the metadata).
    """
    start_isolation()  # OpenCascade loads in the conversions' forkserver meanwhile
    done, failed = each_product(context, "step_file", lambda key: _pin_upload(database, media, key, context.run.run_id))
    record_outcomes(context, {key: {"step_file": meta} for key, meta in done.items()}, failed)
    if failed:
        raise batch_failure("step_files_failed", "STEP files", failed, len(context.partition_keys))
    digest = next(iter(done.values()))["sha256"] if len(done) == 1 else None
    return MaterializeResult(data_version=DataVersion(digest) if digest else None)


def _pin_upload(database: Database, media: MediaStore, key: str, run_id: str) -> dict:
    """Validate, hash, record and pin one product's upload; its metadata."""
    started = time.perf_counter()
    with database.session(tenant_of(key)) as session:
        tenant, product = repository.tenant_and_product(session, key)
        path = step_file_for(media.inbox(tenant.slug), product)
        if path is None:
            raise AutomatError(
                "missing_step_file",
                f"no STEP upload for {product.pim_id} ({product.step_filename or product.key + '.step'}) "
                f"in {media.inbox(tenant.slug)}",
            )
        digest = sha256(path)
        try:
            schema, rejected = sniff_step(path), None
        except AutomatError as error:
            schema, rejected = None, error
        repository.record_file(
            session, tenant.id, path, "step", digest, error=rejected and str(rejected), product_id=product.id
        )
    if rejected:  # recorded with the upload, which stays in the inbox
        raise rejected
    with media.writing(run_id, media.product_dir(tenant.slug, product.key) / SOURCE) as [source]:
        shutil.copyfile(path, source)
    return {
        "upload": MetadataValue.path(str(path)),
        "sha256": digest,
        "bytes": path.stat().st_size,
        "schema": schema,
        "seconds": round(time.perf_counter() - started, 3),
    }


CHECKS = [
    AssetCheckSpec("glb_loads", asset="glb_geometry", description="trimesh loads the GLB and finds triangles"),
    AssetCheckSpec("part_count", asset="glb_geometry", description="one GLB mesh node per STEP part"),
    AssetCheckSpec(
        "bbox_matches",
        asset="glb_geometry",
        description="the GLB's bounding box (m, Y-up) is the STEP's (mm, Z-up) within tolerance",
    ),
    AssetCheckSpec(
        "material_coverage",
        asset="glb_production",
        description="every part resolved to a library material (warns on fallbacks)",
    ),
]


@multi_asset(
    specs=[
        AssetSpec("cad_metadata", deps=["step_file"], group_name="cad", kinds={"json"}, code_version="2"),
        AssetSpec("glb_geometry", deps=["cad_metadata"], group_name="cad", kinds={"glb"}, code_version="2"),
        AssetSpec("glb_production", deps=["glb_geometry"], group_name="cad", kinds={"glb"}, code_version="2"),
    ],
    check_specs=CHECKS,
    partitions_def=product_partitions,
    backfill_policy=BackfillPolicy.single_run(),
)
def cad_conversion(context: AssetExecutionContext, database: Database, media: MediaStore):
    """Metadata, viewer GLB and production GLB in one isolated step per product: the STEP is read once.

    A batch keeps one OpenCascade forkserver for all its products (started while step_file ran), and
    converts them on every core (AUTOMAT_CONVERSIONS_AT_ONCE), which cascadio's one call per file cannot.
    The asset checks of a batch pass when they pass for every product; their metadata name the others.
    """
    cancelled = threading.Event()  # the run was terminated: every conversion under way ends
    done, failed = each_product(
        context,
        "cad_metadata",
        lambda key: _convert(context, database, media, key, cancelled),
        deployment_limits().conversions_at_once or len(os.sched_getaffinity(0)),
        stop=cancelled.set,
    )
    for key, (result, _, _) in done.items():
        context.log.info(f"[cad_metadata] {key}: " + "; ".join(result.materials))  # one event, however many parts
        for warning in result.warnings:
            context.log.warning(f"[cad_metadata] {key}: {warning}")
    record_outcomes(context, {key: _metadata(*converted) for key, converted in done.items()}, failed)
    if not failed:
        for asset in ("cad_metadata", "glb_geometry", "glb_production"):
            yield MaterializeResult(asset_key=asset)
    yield from _checks(
        {
            key: list(check_glbs(result, folder / "model.glb", _fallbacks(result)))
            for key, (result, folder, _) in done.items()
        }
    )
    if failed:
        raise batch_failure("conversions_failed", "conversions", failed, len(context.partition_keys))


def _convert(
    context: AssetExecutionContext, database: Database, media: MediaStore, key: str, cancelled: threading.Event
):
    """One product's conversion, isolated; a failure is recorded with its upload, which stays in the inbox."""
    with database.session(tenant_of(key)) as session:
        tenant, product = repository.tenant_and_product(session, key)
        resolver = repository.material_resolver(session, tenant, product)
        settings = TenantSettings.of(tenant.settings).within(deployment_limits()).cad
    folder = media.product_dir(tenant.slug, product.key)
    upload = step_file_for(media.inbox(tenant.slug), product) or folder / SOURCE
    with database.session(tenant.slug) as session:  # what a worker lost meanwhile leaves for the run's outcome
        for step in ("glb_geometry", "glb_production"):
            repository.record_started(session, tenant.id, product.id, step, "standard", context.run.run_id)
    started = time.perf_counter()
    try:
        with media.writing(context.run.run_id, folder / "model.glb", folder / "production.glb") as glbs:
            result = convert_isolated(
                folder / SOURCE,
                glbs[0],
                settings,
                resolver,
                glbs[1],
                timeout_seconds=settings.timeout_seconds,
                memory_mb=settings.memory_mb,
                name=upload.name,  # reasons and fallback names say the upload's name, not source.step
                cancelled=cancelled,
            )
    except AutomatError as error:
        with database.session(tenant.slug) as session:
            repository.record_file(
                session, tenant.id, upload, "step", sha256(folder / SOURCE), error=str(error), product_id=product.id
            )
            failure = {"error_class": error.error_class, "reason": error.reason, "run_id": context.run.run_id}
            for step in ("glb_geometry", "glb_production"):  # the media browser shows the failure too
                repository.record_media(session, tenant.id, product.id, step, "standard", "failed", **failure)
        raise
    wall = time.perf_counter() - started
    with database.session(tenant.slug) as session:  # both GLBs are media: listed, downloaded, zipped, ordered
        repository.observe(session, "conversion", "cad_conversion", tenant.slug, wall)
        for step, glb, size in (
            ("glb_geometry", "model.glb", result.glb_bytes),
            ("glb_production", "production.glb", result.production_glb_bytes),
        ):
            details = {
                "triangles": result.triangles,
                "output_bytes": size,
                "quality": "standard",
                "conversion_seconds": round(wall, 3),
                "parts": [p.name for p in result.parts],  # what a change of materials or aliases re-resolves
            }
            repository.record_media(
                session,
                tenant.id,
                product.id,
                step,
                "standard",
                "completed",
                path=str(folder / glb),
                run_id=context.run.run_id,
                details=details,
            )
    (folder / "cad_metadata.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result, folder, wall


def _metadata(result: Conversion, folder: Path, wall: float) -> dict[str, dict]:
    """One product's metadata per asset of the conversion."""
    seconds = result.seconds
    parts = (
        "| part | colour | material | rule | solids | faces | volume mm³ |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {p.name} | {p.color or '-'} | {p.material} | {p.material_source} | {p.solids} | {p.faces} | "
            f"{p.volume_mm3:.1f} |"
            for p in result.parts
        )
    )
    return {
        "cad_metadata": {
            "name": result.name,
            "parts": len(result.parts),
            "solids": result.solids,
            "faces": result.faces,
            "schema": result.schema,
            "units": result.units,
            "bbox_mm": MetadataValue.json(result.bbox_mm),
            "warnings": MetadataValue.json(result.warnings),
            "part_table": MetadataValue.md(parts),
            "seconds": round(seconds["read"] + seconds["transfer"] + seconds["metadata"], 3),
        },
        "glb_geometry": {
            "path": MetadataValue.path(str(folder / "model.glb")),
            "triangles": result.triangles,
            "bytes": result.glb_bytes,
            "linear_deflection_mm": result.linear_deflection_mm,
            "angular_deflection_rad": result.angular_deflection_rad,
            "seconds": round(seconds["mesh"], 3),
            "isolation_overhead_seconds": round(wall - sum(seconds.values()), 3),
        },
        "glb_production": {
            "path": MetadataValue.path(str(folder / "production.glb")),
            "bytes": result.production_glb_bytes,
            "materials": MetadataValue.md("\n".join(f"- {line}" for line in result.materials)),
            "fallback_parts": len(_fallbacks(result)),
            "seconds": round(seconds["write"], 3),
        },
    }


def _fallbacks(result: Conversion) -> list[str]:
    return [p.name for p in result.parts if p.material_source == "fallback"]


def _checks(per_product: dict[str, list[AssetCheckResult]]):
    """Each check once for the run: the product's own result for one product; for a batch, passed when
    it passed for every product, its metadata those of the products it did not pass for."""
    if len(per_product) == 1:
        yield from next(iter(per_product.values()))
        return
    by_check: dict[str, list[tuple[str, AssetCheckResult]]] = {}
    for key, results in per_product.items():
        for result in results:
            by_check.setdefault(result.check_name, []).append((key, result))
    for name, results in by_check.items():
        failing = {key: {k: v.value for k, v in r.metadata.items()} for key, r in results if not r.passed}
        first = results[0][1]
        yield AssetCheckResult(
            check_name=name,
            asset_key=first.asset_key,
            passed=not failing,
            severity=first.severity,
            metadata={"products": len(results), "not_passed": MetadataValue.json(failing)},
        )


def check_glbs(result: Conversion, glb: Path, fallbacks: list[str]) -> Iterator[AssetCheckResult]:
    """The asset checks, on the files as written (trimesh reads them independently of OpenCascade)."""
    scene = trimesh.load(glb, force="scene")
    triangles = sum(len(g.faces) for g in scene.geometry.values())
    yield AssetCheckResult(
        check_name="glb_loads",
        asset_key="glb_geometry",
        passed=triangles > 0 and triangles == result.triangles,
        metadata={"triangles": triangles, "expected": result.triangles},
    )
    mesh_nodes = sum("mesh" in node for node in read_glb(glb)[0].get("nodes", []))  # a node per part instance
    yield AssetCheckResult(
        check_name="part_count",
        asset_key="glb_geometry",
        passed=mesh_nodes == len(result.parts),
        metadata={"glb_mesh_nodes": mesh_nodes, "step_parts": len(result.parts)},
    )
    xmin, ymin, zmin, xmax, ymax, zmax = (v / 1000 for v in result.bbox_mm)
    expected = np.array([[xmin, zmin, -ymax], [xmax, zmax, -ymin]])
    tolerance = 0.001 * float(np.linalg.norm(expected[1] - expected[0])) + result.linear_deflection_mm / 1000
    error = float(np.abs(scene_bounds(scene) - expected).max())
    yield AssetCheckResult(
        check_name="bbox_matches",
        asset_key="glb_geometry",
        passed=error <= tolerance,
        metadata={"max_error_m": error, "tolerance_m": tolerance},
    )
    yield AssetCheckResult(
        check_name="material_coverage",
        asset_key="glb_production",
        passed=not fallbacks,
        severity=AssetCheckSeverity.WARN,
        metadata={"fallback_parts": MetadataValue.json(fallbacks)},
    )


def scene_bounds(scene: trimesh.Scene) -> np.ndarray:
    """``scene.bounds``, with the transforms composed level by level: trimesh composes a node's
    path in one recursion, which fails on assemblies nested about a thousand deep."""
    below: dict[str, list[tuple[str, dict]]] = {}
    for parent, child, data in scene.graph.to_edgelist():
        below.setdefault(parent, []).append((child, data))
    corners, stack = [], [(scene.graph.base_frame, np.eye(4))]
    while stack:
        node, world = stack.pop()
        for child, data in below.get(node, []):
            transform = world @ np.asarray(data.get("matrix", np.eye(4)), dtype=np.float64)
            stack.append((child, transform))
            if data.get("geometry") in scene.geometry:
                points = np.dot(transform[:3, :3], scene.geometry[data["geometry"]].vertices.T)
                corners += [points.min(axis=1) + transform[:3, 3], points.max(axis=1) + transform[:3, 3]]
    corners = np.array(corners)
    return np.array([corners.min(axis=0), corners.max(axis=0)])


class GlbConfig(Config, RenderParams):
    """The step's parameters (``step_params.RenderParams``: the GLB output types) as Dagster run config."""


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="cad", kinds={"glb"}, code_version="1")
def glb_export(context: AssetExecutionContext, config: GlbConfig, database: Database, media: MediaStore):
    """One GLB per ``glb`` output type of the tenant (or per one named). Standard quality delivers the
    conversion's own GLB; coarse and fine tessellate the STEP anew into a file of their own, leaving
    the standard one alone."""
    started = time.perf_counter()
    outputs = {}
    with classified(context, "glb_export"):
        with database.session(tenant_of(context.partition_key)) as session:
            tenant, product = repository.tenant_and_product(session, context.partition_key)
            known = {t.name: t for t in repository.tenant_output_types(session, tenant, "glb")}
            resolver = repository.material_resolver(session, tenant, product)
            settings = TenantSettings.of(tenant.settings).within(deployment_limits()).cad
        unknown = sorted(set(config.output_types) - set(known))
        if unknown:
            raise AutomatError("unknown_output_type", f"{', '.join(unknown)} is not a glb output type of this tenant")
        folder = media.product_dir(tenant.slug, product.key)
        for output_type in [known[n] for n in config.output_types] or known.values():
            path, details = _glb(folder, output_type, settings, resolver)
            with database.session(tenant.slug) as session:
                repository.record_media(
                    session,
                    tenant.id,
                    product.id,
                    "glb_export",
                    output_type.name,
                    "completed",
                    path=str(path),
                    run_id=context.run.run_id,
                    details=details,
                )
            outputs[output_type.name] = {"path": str(path), **details}
    return MaterializeResult(
        metadata={
            "outputs": MetadataValue.json(outputs),
            "count": len(outputs),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


def _glb(folder: Path, output_type: OutputType, settings: CadSettings, resolver) -> tuple[Path, dict]:
    """The GLB of ``output_type`` in ``folder``, made if its quality is not the standard one."""
    standard = folder / ("production.glb" if output_type.glb_variant == "production" else "model.glb")
    if output_type.quality == "standard":
        if not standard.is_file():
            raise AutomatError("missing_input", f"{standard} does not exist; materialize glb_production first")
        return standard, {
            "quality": "standard",
            "variant": output_type.glb_variant,
            "output_bytes": standard.stat().st_size,
        }
    scale = QUALITY_DEFLECTION[output_type.quality]
    scaled = ("relative_deflection", "min_deflection_mm", "max_deflection_mm")
    options = settings.model_copy(update={field: getattr(settings, field) * scale for field in scaled})
    viewer, production = folder / f"glb-{output_type.name}.viewer.glb", folder / f"glb-{output_type.name}.glb"
    result = convert_isolated(
        folder / SOURCE,
        viewer,
        options,
        resolver,
        production,
        timeout_seconds=settings.timeout_seconds,
        memory_mb=settings.memory_mb,
    )
    path = production if output_type.glb_variant == "production" else viewer
    details = {
        "quality": output_type.quality,
        "variant": output_type.glb_variant,
        "triangles": result.triangles,
        "output_bytes": path.stat().st_size,
        "linear_deflection_mm": result.linear_deflection_mm,
    }
    return path, details
