"""CAD assets per tenant|product: the validated STEP upload, its metadata and its web GLB."""

import json
import shutil
import time

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from automat_pipeline.cad import convert_step as step_to_glb
from automat_pipeline.cad import sniff_step
from automat_pipeline.db import repository
from automat_pipeline.errors import InputError
from automat_pipeline.inbox import sha256, step_file_for
from automat_pipeline.partitions import product_partitions, split_product_key
from automat_pipeline.resources import Database, MediaStore

SOURCE = "source.step"


@asset(partitions_def=product_partitions, group_name="cad", kinds={"step"}, code_version="1")
def step_file(context: AssetExecutionContext, database: Database, media: MediaStore) -> MaterializeResult:
    """The product's STEP upload, validated, hashed and pinned as ``source.step`` beside its media.

    Its data version is the file's sha256, so an unchanged re-upload leaves downstream fresh.
    """
    started = time.perf_counter()
    tenant_slug, key = split_product_key(context.partition_key)
    with database.session() as session:
        tenant = repository.tenant(session, tenant_slug, create=False)
        product = repository.product(session, tenant.id, key) if tenant else None
        if product is None:
            raise Failure(f"unknown_product: {context.partition_key} is not in the catalogue")
        path = step_file_for(media.inbox(tenant_slug), product)
        if path is None:
            raise Failure(f"missing_step_file: no STEP upload for {product.pim_id} "
                          f"({product.step_filename or product.key + '.step'}) in {media.inbox(tenant_slug)}")
        digest = sha256(path)
        try:
            schema, error = sniff_step(path), None
        except InputError as rejected:
            schema, error = None, rejected
        repository.record_file(session, tenant.id, path, "step", digest,
                               error=str(error) if error else None, product_id=product.id)
    if error:
        context.log.error(f"[step_file] {path.name} rejected: {error}")
        raise Failure(str(error), metadata={"error_class": error.error_class, "upload": str(path)})
    shutil.copyfile(path, media.product_dir(tenant_slug, key) / SOURCE)
    return MaterializeResult(
        metadata={
            "upload": MetadataValue.path(str(path)),
            "sha256": digest,
            "bytes": path.stat().st_size,
            "schema": schema,
            "seconds": round(time.perf_counter() - started, 3),
        },
        data_version=DataVersion(digest),
    )


@multi_asset(
    specs=[
        AssetSpec("cad_metadata", deps=["step_file"], group_name="cad", kinds={"json"}, code_version="1"),
        AssetSpec("glb_geometry", deps=["cad_metadata"], group_name="cad", kinds={"glb"}, code_version="1"),
    ],
    partitions_def=product_partitions,
)
def convert_step(context: AssetExecutionContext, media: MediaStore):
    """Metadata and GLB in one step: the STEP is read once (reading is ~80% of the cost)."""
    started = time.perf_counter()
    folder = media.product_dir(*split_product_key(context.partition_key))
    try:
        result = step_to_glb(folder / SOURCE, folder / "model.glb")
    except InputError as error:
        context.log.error(f"[cad_metadata] {context.partition_key}: {error}")
        raise Failure(str(error), metadata={"error_class": error.error_class}) from error
    (folder / "cad_metadata.json").write_text(json.dumps(result.as_dict(), indent=1))
    for warning in result.warnings:
        context.log.warning(f"[glb_geometry] {warning}")
    parts = "| part | colour | solids | faces | volume mm³ |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {p.name} | {p.color or '-'} | {p.solids} | {p.faces} | {p.volume_mm3:.1f} |" for p in result.parts
    )
    seconds = result.seconds
    yield MaterializeResult(
        asset_key="cad_metadata",
        metadata={
            "name": result.name,
            "parts": len(result.parts),
            "solids": result.solids,
            "faces": result.faces,
            "schema": result.schema,
            "units": result.units,
            "bbox_mm": MetadataValue.json(result.bbox_mm),
            "warnings": MetadataValue.json(result.warnings),
            "part_table": MetadataValue.md(parts),
            "seconds": round(seconds["read"] + seconds["transfer"], 3),
        },
    )
    yield MaterializeResult(
        asset_key="glb_geometry",
        metadata={
            "path": MetadataValue.path(str(folder / "model.glb")),
            "triangles": result.triangles,
            "bytes": result.glb_bytes,
            "linear_deflection_mm": result.linear_deflection_mm,
            "angular_deflection_rad": result.angular_deflection_rad,
            "seconds": round(time.perf_counter() - started - seconds["read"] - seconds["transfer"], 3),
        },
    )
