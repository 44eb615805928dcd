"""Render assets per tenant|product: Blender output from the production GLB, per output type.

Every render's outcome (completed, failed, cancelled) is recorded in ``media_assets``, where the
API's media browser finds it.
"""

import base64
import json
import tempfile
import time
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    DagsterExecutionInterruptedError,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from automat_pipeline import materials
from automat_pipeline.db import repository
from automat_pipeline.output_types import OutputType
from automat_pipeline.partitions import product_partitions, split_product_key
from automat_pipeline.resources import Blender, Database, MediaStore


class Renders:
    """The renders of one tenant|product: its GLB, the tenant's output types, library and templates."""

    def __init__(self, context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore,
                 workdir: Path):
        self.context, self.blender, self.database = context, blender, database
        tenant_slug, key = split_product_key(context.partition_key)
        self.folder = media.product_dir(tenant_slug, key)
        self.glb = self.folder / "production.glb"
        self.templates = media.templates_dir(tenant_slug)
        if not self.glb.is_file():
            raise Failure(f"missing_input: {self.glb} does not exist; materialize glb_production first")
        with database.session() as session:
            tenant = repository.tenant(session, tenant_slug, create=False)
            product = repository.product(session, tenant.id, key)
            if product is None:
                raise Failure(f"unknown_product: {key} is not in {tenant_slug}'s catalogue")
            self.tenant_id, self.product_id = tenant.id, product.id
            self.output_types = {kind: repository.tenant_output_types(session, tenant, kind)
                                 for kind in ("thumbnail", "still", "turntable")}
            library = materials.for_blender(repository.material_library(session, tenant),
                                            repository.fallback_material(tenant))
        self.library = workdir / "materials.json"
        self.library.write_text(json.dumps(library))

    def render(self, asset_name: str, kind: OutputType, output: Path) -> dict:
        """Render one output; its outcome is recorded whether it completes, fails or is cancelled."""
        record = dict(asset=asset_name, output_type=kind.name, run_id=self.context.run.run_id)
        try:
            template = self._template(kind)
            rendered = self.blender.render(self.context, self.glb, output, kind, self.library, template)
        except Failure as failure:
            error_class = (failure.metadata or {}).get("error_class")
            self._record(**record, status="failed", error_class=error_class and error_class.value,
                         reason=failure.description)
            raise
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            self._record(**record, status="cancelled", reason="the run was terminated while Blender rendered")
            raise
        details = {k: v.value for k, v in (rendered.metadata or {}).items()}
        self._record(**record, status="completed", path=str(output), details=details)
        return details

    def _template(self, kind: OutputType) -> Path | None:
        if kind.template is None:
            return None
        path = self.templates / kind.template
        if not path.is_file():
            raise Failure(f"missing_template: output type {kind.name!r} names {kind.template}, which is not in "
                          f"{self.templates}", metadata={"error_class": "missing_template"})
        return path

    def _record(self, **values) -> None:
        with self.database.session() as session:
            repository.record_render(session, self.tenant_id, self.product_id, **values)


def _render_each(context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore,
                 kind: str) -> MaterializeResult:
    """One file per output type of ``kind`` of the tenant, named after the output type."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        renders = Renders(context, blender, database, media, Path(workdir))
        outputs = {}
        for output_type in renders.output_types[kind]:
            output = renders.folder / f"{kind}-{output_type.name}{output_type.suffix}"
            outputs[output_type.name] = {"path": str(output), **renders.render(kind, output_type, output)}
    return MaterializeResult(metadata={"outputs": MetadataValue.json(outputs), "count": len(outputs),
                                       "seconds": round(time.perf_counter() - started, 3)})


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "png"},
       code_version="4", pool="blender")
def thumbnail(context: AssetExecutionContext, blender: Blender, database: Database,
              media: MediaStore) -> MaterializeResult:
    """The tenant's ``thumbnail`` output type: a quick transparent PNG, shown in the asset's metadata."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        renders = Renders(context, blender, database, media, Path(workdir))
        kind = renders.output_types["thumbnail"][0]
        output = renders.folder / "thumbnail.png"
        details = renders.render("thumbnail", kind, output)
    preview = base64.b64encode(output.read_bytes()).decode()
    return MaterializeResult(
        metadata={
            **details,
            "output_type": kind.name,
            "path": MetadataValue.path(str(output)),
            "preview": MetadataValue.md(f"![thumbnail](data:image/png;base64,{preview})"),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "png"},
       code_version="2", pool="blender")
def still(context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore) -> MaterializeResult:
    """One production PNG per ``still`` output type of the tenant."""
    return _render_each(context, blender, database, media, "still")


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender", "mp4"},
       code_version="3", pool="blender")
def turntable(context: AssetExecutionContext, blender: Blender, database: Database,
              media: MediaStore) -> MaterializeResult:
    """An MP4 per ``turntable`` output type: the camera circles the model (opaque: H.264 has no alpha)."""
    return _render_each(context, blender, database, media, "turntable")


@asset(partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender"},
       code_version="2")
def blend_export(context: AssetExecutionContext, blender: Blender, database: Database,
                 media: MediaStore) -> MaterializeResult:
    """The scene a still is rendered from (model, materials, camera, lights), saved as .blend."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        renders = Renders(context, blender, database, media, Path(workdir))
        output = renders.folder / "scene.blend"
        details = renders.render("blend_export", renders.output_types["still"][0], output)
    return MaterializeResult(metadata={**details, "path": MetadataValue.path(str(output)),
                                       "seconds": round(time.perf_counter() - started, 3)})
