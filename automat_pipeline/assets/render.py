"""Render assets per tenant|product: Blender output from the production GLB, per output type."""

import base64
import time
from pathlib import Path

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from automat_pipeline.db import repository
from automat_pipeline.output_types import OutputType
from automat_pipeline.partitions import product_partitions, split_product_key
from automat_pipeline.resources import Blender, Database, MediaStore


def _output_types(context: AssetExecutionContext, database: Database, kind: str) -> list[OutputType]:
    tenant_slug, _ = split_product_key(context.partition_key)
    with database.session() as session:
        return repository.tenant_output_types(session, repository.tenant(session, tenant_slug, create=False), kind)


def _production_glb(context: AssetExecutionContext, media: MediaStore) -> tuple[Path, Path]:
    folder = media.product_dir(*split_product_key(context.partition_key))
    if not (folder / "production.glb").is_file():
        raise Failure(f"missing_input: {folder / 'production.glb'} does not exist; materialize glb_production first")
    return folder, folder / "production.glb"


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "png"},
       code_version="3", pool="blender")
def thumbnail(context: AssetExecutionContext, blender: Blender, database: Database,
              media: MediaStore) -> MaterializeResult:
    """The tenant's ``thumbnail`` output type: a quick transparent PNG, shown in the asset's metadata."""
    started = time.perf_counter()
    folder, glb = _production_glb(context, media)
    kind = _output_types(context, database, "thumbnail")[0]
    output = folder / "thumbnail.png"
    rendered = blender.render(context, glb, output, kind)
    preview = base64.b64encode(output.read_bytes()).decode()
    return MaterializeResult(
        metadata={
            **(rendered.metadata or {}),
            "output_type": kind.name,
            "path": MetadataValue.path(str(output)),
            "preview": MetadataValue.md(f"![thumbnail](data:image/png;base64,{preview})"),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


def _render_each(context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore,
                 kind: str) -> MaterializeResult:
    """One file per output type of ``kind`` of the tenant, named after the output type."""
    started = time.perf_counter()
    folder, glb = _production_glb(context, media)
    outputs = {}
    for output_type in _output_types(context, database, kind):
        output = folder / f"{kind}-{output_type.name}{output_type.suffix}"
        rendered = blender.render(context, glb, output, output_type)
        outputs[output_type.name] = {"path": str(output), **{k: v.value for k, v in (rendered.metadata or {}).items()}}
    return MaterializeResult(metadata={"outputs": MetadataValue.json(outputs), "count": len(outputs),
                                       "seconds": round(time.perf_counter() - started, 3)})


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "png"},
       code_version="1", pool="blender")
def still(context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore) -> MaterializeResult:
    """One production PNG per ``still`` output type of the tenant."""
    return _render_each(context, blender, database, media, "still")


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "mp4"},
       code_version="2", pool="blender")
def turntable(context: AssetExecutionContext, blender: Blender, database: Database,
              media: MediaStore) -> MaterializeResult:
    """An MP4 per ``turntable`` output type: the camera circles the model (opaque: H.264 has no alpha)."""
    return _render_each(context, blender, database, media, "turntable")


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender"},
       code_version="1")
def blend_export(context: AssetExecutionContext, blender: Blender, database: Database,
                 media: MediaStore) -> MaterializeResult:
    """The scene a still is rendered from (model, materials, camera, lights), saved as .blend."""
    started = time.perf_counter()
    folder, glb = _production_glb(context, media)
    output = folder / "scene.blend"
    saved = blender.render(context, glb, output, _output_types(context, database, "still")[0])
    return MaterializeResult(metadata={**(saved.metadata or {}), "path": MetadataValue.path(str(output)),
                                       "seconds": round(time.perf_counter() - started, 3)})
