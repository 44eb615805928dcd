"""Render assets per tenant|product: Blender output from the GLB."""

import base64
import time

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from automat_pipeline.partitions import product_partitions, split_product_key
from automat_pipeline.resources import Blender, MediaStore


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "png"},
       code_version="2", pool="blender")
def thumbnail(context: AssetExecutionContext, blender: Blender, media: MediaStore) -> MaterializeResult:
    """A transparent PNG of the production GLB (library materials), framed on the model; shown in the UI."""
    started = time.perf_counter()
    folder = media.product_dir(*split_product_key(context.partition_key))
    output, glb = folder / "thumbnail.png", folder / "production.glb"
    if not glb.is_file():
        raise Failure(f"missing_input: {glb} does not exist; materialize glb_production first")
    rendered = blender.render_thumbnail(context, glb, output)
    preview = base64.b64encode(output.read_bytes()).decode()
    return MaterializeResult(
        metadata={
            **(rendered.metadata or {}),
            "path": MetadataValue.path(str(output)),
            "preview": MetadataValue.md(f"![thumbnail](data:image/png;base64,{preview})"),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "mp4"},
       code_version="1", pool="blender")
def turntable(context: AssetExecutionContext, blender: Blender, media: MediaStore) -> MaterializeResult:
    """An MP4 of the camera circling the production GLB (opaque: H.264 has no alpha)."""
    started = time.perf_counter()
    folder = media.product_dir(*split_product_key(context.partition_key))
    output, glb = folder / "turntable.mp4", folder / "production.glb"
    if not glb.is_file():
        raise Failure(f"missing_input: {glb} does not exist; materialize glb_production first")
    rendered = blender.render_turntable(context, glb, output)
    return MaterializeResult(
        metadata={
            **(rendered.metadata or {}),
            "path": MetadataValue.path(str(output)),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
