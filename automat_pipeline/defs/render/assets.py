"""Render assets per tenant|product: Blender output from the production GLB, per output type.

Every render's outcome (completed, failed, cancelled) is recorded in ``media_assets``, where the
API's media browser finds it.
"""

import base64
import json
import tempfile
import time
import warnings
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    BetaWarning,
    Config,
    DagsterExecutionInterruptedError,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from automat_pipeline import materials
from automat_pipeline.blender import render_args
from automat_pipeline.db import repository
from automat_pipeline.defs.partitions import product_partitions
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.keys import split_partition_key
from automat_pipeline.output_types import OutputType

# The warm thumbnail path rests on single-run backfills, which Dagster 1.13 still calls beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)


class Renders:
    """The renders of one tenant|product: its GLB, the tenant's output types, library and templates."""

    def __init__(
        self,
        context: AssetExecutionContext,
        blender: Blender,
        database: Database,
        media: MediaStore,
        workdir: Path,
        partition_key: str | None = None,
    ):
        self.context, self.blender, self.database = context, blender, database
        tenant_slug, key = split_partition_key(partition_key or context.partition_key)
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
            self.output_types = {
                kind: repository.tenant_output_types(session, tenant, kind)
                for kind in ("thumbnail", "still", "turntable")
            }
            library = materials.for_blender(
                repository.material_library(session, tenant), repository.fallback_material(tenant)
            )
        self.library = workdir / f"materials-{tenant_slug}-{key}.json"
        self.library.write_text(json.dumps(library))

    def render(self, asset_name: str, kind: OutputType, output: Path) -> dict:
        """Render one output; its outcome is recorded whether it completes, fails or is cancelled."""
        try:
            template = self.template(kind)
            rendered = self.blender.render(self.context, self.glb, output, kind, self.library, template)
        except Failure as failure:
            error_class = (failure.metadata or {}).get("error_class")
            self.record(
                asset_name, kind, "failed", error_class=error_class and error_class.value, reason=failure.description
            )
            raise
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            self.record(asset_name, kind, "cancelled", reason=CANCELLED)
            raise
        details = {k: v.value for k, v in (rendered.metadata or {}).items()}
        self.record(asset_name, kind, "completed", path=str(output), details=details)
        return details

    def template(self, kind: OutputType) -> Path | None:
        if kind.template is None:
            return None
        path = self.templates / kind.template
        if not path.is_file():
            raise Failure(
                f"missing_template: output type {kind.name!r} names {kind.template}, which is not in {self.templates}",
                metadata={"error_class": "missing_template"},
            )
        return path

    def record(self, asset_name: str, kind: OutputType, status: str, **values) -> None:
        with self.database.session() as session:
            repository.record_render(
                session,
                self.tenant_id,
                self.product_id,
                asset=asset_name,
                output_type=kind.name,
                status=status,
                run_id=self.context.run.run_id,
                **values,
            )


CANCELLED = "the run was terminated while Blender rendered"


def render_warm(
    context: AssetExecutionContext, blender: Blender, asset_name: str, jobs: list[tuple[Renders, OutputType, Path]]
) -> dict[Path, dict | str]:
    """Render many products in one warm Blender process and record each outcome.

    Returns each output's details, or the reason it failed; one product's failure does not stop
    the others.
    """
    outcomes: dict[Path, dict | str] = {}
    batch = []
    for renders, kind, output in jobs:
        try:
            batch.append(
                (renders, kind, output, render_args(renders.glb, output, kind, renders.library, renders.template(kind)))
            )
        except Failure as failure:
            renders.record(asset_name, kind, "failed", error_class="missing_template", reason=failure.description)
            outcomes[output] = failure.description
    try:
        results = blender.render_batch(
            context, [args for *_, args in batch], timeout=sum(kind.timeout_seconds for _, kind, _, _ in batch)
        )
    except Failure as failure:  # Blender could not start, or the batch ran out of time
        for renders, kind, output, _ in batch:
            output.unlink(missing_ok=True)
            renders.record(
                asset_name,
                kind,
                "failed",
                error_class=failure.metadata["error_class"].value,
                reason=failure.description,
            )
        raise
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        for renders, kind, output, _ in batch:
            output.unlink(missing_ok=True)
            renders.record(asset_name, kind, "cancelled", reason=CANCELLED)
        raise
    by_output = {r.get("output"): r for r in results}
    for renders, kind, output, _ in batch:
        result = by_output.get(str(output), {"error": "render_failed: Blender reported no result"})
        if "error" in result:
            error_class, _, reason = result["error"].partition(": ")
            renders.record(asset_name, kind, "failed", error_class=error_class, reason=result["error"])
            output.unlink(missing_ok=True)
            outcomes[output] = result["error"]
        else:
            renders.record(asset_name, kind, "completed", path=str(output), details=result)
            outcomes[output] = result
    return outcomes


class RenderConfig(Config):
    output_types: list[str] = Field(
        default_factory=list,
        description="The output types to render (an order line names one); empty: every one of this kind.",
    )


def _render_each(
    context: AssetExecutionContext,
    config: RenderConfig,
    blender: Blender,
    database: Database,
    media: MediaStore,
    kind: str,
) -> MaterializeResult:
    """One file per output type of ``kind`` of the tenant (or per one named), named after the output type."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        renders = Renders(context, blender, database, media, Path(workdir))
        known = {t.name: t for t in renders.output_types[kind]}
        unknown = sorted(set(config.output_types) - set(known))
        if unknown:
            raise Failure(
                f"unknown_output_type: {', '.join(unknown)} is not a {kind} output type of this tenant "
                f"(known: {', '.join(sorted(known))})"
            )
        outputs = {}
        for output_type in [known[n] for n in config.output_types] or known.values():
            output = renders.folder / f"{kind}-{output_type.name}{output_type.suffix}"
            outputs[output_type.name] = {"path": str(output), **renders.render(kind, output_type, output)}
    return MaterializeResult(
        metadata={
            "outputs": MetadataValue.json(outputs),
            "count": len(outputs),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


@asset(
    partitions_def=product_partitions,
    deps=["glb_production"],
    group_name="render",
    kinds={"blender", "png"},
    code_version="5",
    pool="blender",
    backfill_policy=BackfillPolicy.single_run(),
)
def thumbnail(
    context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore
) -> MaterializeResult:
    """The tenant's ``thumbnail`` output type: a quick transparent PNG, shown in the asset's metadata.

    A backfill renders all its products in one run and one warm Blender process (5x the
    throughput of a process per product with Workbench, bench/results/render.json).
    """
    started = time.perf_counter()
    failed: dict[str, str] = {}
    keys: dict[Path, str] = {}
    with tempfile.TemporaryDirectory() as workdir:
        jobs = []
        for key in context.partition_keys:
            try:
                renders = Renders(context, blender, database, media, Path(workdir), key)
            except Failure as failure:
                failed[key] = failure.description
                continue
            keys[renders.folder / "thumbnail.png"] = key
            jobs.append((renders, renders.output_types["thumbnail"][0], renders.folder / "thumbnail.png"))
        outcomes = render_warm(context, blender, "thumbnail", jobs) if jobs else {}
    failed |= {keys[output]: outcome for output, outcome in outcomes.items() if isinstance(outcome, str)}
    if failed:
        raise Failure(
            next(iter(failed.values()))
            if len(context.partition_keys) == 1
            else f"{len(failed)} of {len(context.partition_keys)} thumbnails failed: "
            + "; ".join(f"{key}: {reason}" for key, reason in failed.items()),
            metadata={"failed": MetadataValue.json(failed)},
        )
    metadata = {"count": len(outcomes), "seconds": round(time.perf_counter() - started, 3)}
    if len(outcomes) == 1:
        [(output, details)] = outcomes.items()
        preview = base64.b64encode(output.read_bytes()).decode()
        metadata |= {
            **details,
            "output_type": jobs[0][1].name,
            "path": MetadataValue.path(str(output)),
            "preview": MetadataValue.md(f"![thumbnail](data:image/png;base64,{preview})"),
        }
    return MaterializeResult(metadata=metadata)


@asset(
    partitions_def=product_partitions,
    deps=["glb_production"],
    group_name="render",
    kinds={"blender", "png"},
    code_version="2",
    pool="blender",
)
def still(
    context: AssetExecutionContext, config: RenderConfig, blender: Blender, database: Database, media: MediaStore
) -> MaterializeResult:
    """One production PNG per ``still`` output type of the tenant."""
    return _render_each(context, config, blender, database, media, "still")


@asset(
    partitions_def=product_partitions,
    deps=["glb_production"],
    group_name="render",
    kinds={"blender", "mp4"},
    code_version="3",
    pool="blender",
)
def turntable(
    context: AssetExecutionContext, config: RenderConfig, blender: Blender, database: Database, media: MediaStore
) -> MaterializeResult:
    """An MP4 per ``turntable`` output type: the camera circles the model (opaque: H.264 has no alpha)."""
    return _render_each(context, config, blender, database, media, "turntable")


@asset(
    partitions_def=product_partitions, deps=["glb_production"], group_name="render", kinds={"blender"}, code_version="2"
)
def blend_export(
    context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore
) -> MaterializeResult:
    """The scene a still is rendered from (model, materials, camera, lights), saved as .blend."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        renders = Renders(context, blender, database, media, Path(workdir))
        output = renders.folder / "scene.blend"
        details = renders.render("blend_export", renders.output_types["still"][0], output)
    return MaterializeResult(
        metadata={
            **details,
            "path": MetadataValue.path(str(output)),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
