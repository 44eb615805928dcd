"""Render assets per tenant|product: Blender output from the production GLB, per output type.

Every render's outcome (completed, failed, cancelled) is recorded in ``media_assets``, where the
API's media browser finds it.
"""

import base64
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    BetaWarning,
    Config,
    DagsterExecutionInterruptedError,
    MaterializeResult,
    MetadataValue,
    asset,
)

from automat_pipeline import materials, policy, tags
from automat_pipeline.blender import render_args
from automat_pipeline.db import repository
from automat_pipeline.defs.failures import classified, failure
from automat_pipeline.defs.partitions import product_partitions
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.errors import AutomatError
from automat_pipeline.output_types import OutputType, check_limits
from automat_pipeline.settings import deployment_limits
from automat_pipeline.step_params import RenderParams
from automat_pipeline.tenant_settings import TenantSettings

# The warm thumbnail path rests on single-run backfills, which Dagster 1.13 still calls beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)


@dataclass(frozen=True)
class RenderOutcome:
    """One render of a batch: its output, and what Blender reported or why it failed."""

    output: Path
    details: dict | None = None
    error: AutomatError | None = None


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
        self.context, self.blender, self.database, self.media = context, blender, database, media
        with database.session() as session:
            tenant, product = repository.tenant_and_product(session, partition_key or context.partition_key)
            self.tenant_id, self.product_id = tenant.id, product.id
            self.rules = TenantSettings.of(tenant.settings)
            self.output_types = {
                kind: repository.tenant_output_types(session, tenant, kind)
                for kind in ("thumbnail", "still", "turntable")
            }
            library = materials.for_blender(
                repository.material_library(session, tenant), repository.fallback_material(tenant)
            )
        self.folder = media.product_dir(tenant.slug, product.key)
        self.glb = self.folder / "production.glb"
        self.templates = media.templates_dir(tenant.slug)
        if not self.glb.is_file():
            raise AutomatError("missing_input", f"{self.glb} does not exist; materialize glb_production first")
        self.library = workdir / f"materials-{tenant.slug}-{product.key}.json"
        self.library.write_text(json.dumps(library))

    def render(self, step: str, output_type: OutputType, output: Path) -> dict:
        """Render one output; its outcome is recorded whether it completes, fails or is cancelled
        (and, if the worker dies meanwhile, by the run's outcome: it is ``running`` till then)."""
        self.record(step, output_type, "running")
        try:
            self.allowed(output_type)
            template = self.template(output_type)
            with self.media.writing(self.context.run.run_id, output) as [partial]:
                details = self.blender.render(
                    self.context, self.glb, partial, output_type, self.library, template, step, self.progress
                )
        except AutomatError as error:
            self.record(step, output_type, "failed", error_class=error.error_class, reason=error.reason)
            raise
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            self.record(step, output_type, "cancelled", reason=CANCELLED)
            raise
        details = details | {"output": str(output)}  # Blender wrote it under its partial name
        self.record(step, output_type, "completed", path=str(output), details=details)
        return details

    def allowed(self, output_type: OutputType) -> None:
        """The tenant's rules and the deployment's maxima, asked before Blender starts, whatever asked
        for the render (an order, a workflow, the upload sensor's thumbnail, an operator)."""
        policy.check_engine(self.rules, output_type)
        check_limits(output_type, deployment_limits())

    def progress(self, percent: int) -> None:
        """A render's progress, on the order line whose run this is (the client's job document)."""
        line = self.context.run.tags.get(tags.ORDER_LINE)
        if line:
            with self.database.session() as session:
                repository.record_progress(session, int(line), self.context.run.run_id, percent)

    def thumbnail_type(self, name: str | None) -> OutputType:
        """The thumbnail output type named, else the tenant's ``thumbnail``, else its first of that kind."""
        known = {t.name: t for t in self.output_types["thumbnail"]}
        if name is not None and name not in known:
            raise AutomatError("unknown_output_type", f"{name} is not a thumbnail output type of this tenant")
        return known[name] if name else known.get("thumbnail", self.output_types["thumbnail"][0])

    def template(self, output_type: OutputType) -> Path | None:
        if output_type.template is None:
            return None
        path = self.templates / output_type.template
        if not path.is_file():
            raise AutomatError(
                "missing_template",
                f"output type {output_type.name!r} names {output_type.template}, which is not in {self.templates}",
            )
        return path

    def record(self, step: str, output_type: OutputType, status: str, **values) -> None:
        with self.database.session() as session:
            if status == "running":
                repository.record_started(
                    session, self.tenant_id, self.product_id, step, output_type.name, self.context.run.run_id
                )
                return
            repository.record_media(
                session,
                self.tenant_id,
                self.product_id,
                asset=step,
                output_type=output_type.name,
                status=status,
                run_id=self.context.run.run_id,
                **values,
            )


CANCELLED = "the run was terminated while Blender rendered"


def render_warm(
    context: AssetExecutionContext,
    blender: Blender,
    media: MediaStore,
    step: str,
    jobs: list[tuple[Renders, OutputType, Path]],
) -> list[RenderOutcome]:
    """Render many products in one warm Blender process and record each outcome; one product's
    failure does not stop the others."""
    outcomes: list[RenderOutcome] = []
    batch = []
    for renders, output_type, output in jobs:
        try:
            renders.allowed(output_type)
            batch.append((renders, output_type, output, renders.template(output_type)))
        except AutomatError as error:
            renders.record(step, output_type, "failed", error_class=error.error_class, reason=error.reason)
            outcomes.append(RenderOutcome(output, error=error))
    if not batch:  # every one refused before Blender: nothing to start
        return outcomes
    for renders, output_type, _, _ in batch:
        renders.record(step, output_type, "running")
    results = {}
    try:
        with media.writing(context.run.run_id, *(output for _, _, output, _ in batch)) as partials:
            args = [
                render_args(renders.glb, partial, output_type, renders.library, template, step)
                for (renders, output_type, _, template), partial in zip(batch, partials, strict=True)
            ]
            by_output = {
                r.get("output"): r
                for r in blender.render_batch(context, args, timeout=sum(t.timeout_seconds for _, t, _, _ in batch))
            }
            for (_, _, output, _), partial in zip(batch, partials, strict=True):
                results[output] = by_output.get(str(partial), {"error": "render_failed: Blender reported no result"})
                if "error" in results[output]:
                    partial.unlink(missing_ok=True)
    except AutomatError as error:  # Blender could not start, or the batch ran out of time
        for renders, output_type, _, _ in batch:
            renders.record(step, output_type, "failed", error_class=error.error_class, reason=error.reason)
        raise
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        for renders, output_type, _, _ in batch:
            renders.record(step, output_type, "cancelled", reason=CANCELLED)
        raise
    for renders, output_type, output, _ in batch:  # each file in place now
        result = results[output]
        if "error" in result:
            error = (
                AutomatError(*result["error"].split(": ", 1))
                if ": " in result["error"]
                else AutomatError("render_failed", result["error"])
            )
            renders.record(step, output_type, "failed", error_class=error.error_class, reason=error.reason)
            outcomes.append(RenderOutcome(output, error=error))
        else:
            details = result | {"output": str(output)}
            renders.record(step, output_type, "completed", path=str(output), details=details)
            outcomes.append(RenderOutcome(output, details=details))
    return outcomes


class RenderConfig(Config, RenderParams):
    """The step's parameters (``step_params.RenderParams``) as Dagster run config."""


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
    with classified(context, kind), tempfile.TemporaryDirectory() as workdir:
        renders = Renders(context, blender, database, media, Path(workdir))
        known = {t.name: t for t in renders.output_types[kind]}
        unknown = sorted(set(config.output_types) - set(known))
        if unknown:
            raise AutomatError(
                "unknown_output_type",
                f"{', '.join(unknown)} is not a {kind} output type of this tenant (known: {', '.join(sorted(known))})",
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
    context: AssetExecutionContext, config: RenderConfig, blender: Blender, database: Database, media: MediaStore
) -> MaterializeResult:
    """The product's preview, ``thumbnail.png``: the tenant's ``thumbnail`` output type (or the
    thumbnail type the run names), shown in the asset's metadata.

    A backfill renders all its products in one run and one warm Blender process (5x the
    throughput of a process per product with Workbench, bench/results/render.json).
    """
    started = time.perf_counter()
    failed: dict[str, AutomatError] = {}
    keys: dict[Path, str] = {}
    with tempfile.TemporaryDirectory() as workdir:
        jobs = []
        for key in context.partition_keys:
            try:
                renders = Renders(context, blender, database, media, Path(workdir), key)
            except AutomatError as error:
                failed[key] = error
                continue
            try:
                output_type = renders.thumbnail_type(config.output_types[0] if config.output_types else None)
            except AutomatError as error:
                failed[key] = error
                continue
            keys[renders.folder / "thumbnail.png"] = key
            jobs.append((renders, output_type, renders.folder / "thumbnail.png"))
        with classified(context, "thumbnail"):
            outcomes = render_warm(context, blender, media, "thumbnail", jobs) if jobs else []
    failed |= {keys[o.output]: o.error for o in outcomes if o.error}
    if len(context.partition_keys) == 1 and failed:
        with classified(context, "thumbnail"):
            raise next(iter(failed.values()))
    if failed:
        summary = AutomatError(
            "thumbnails_failed",
            f"{len(failed)} of {len(context.partition_keys)} thumbnails failed: "
            + "; ".join(f"{key}: {error}" for key, error in failed.items()),
        )
        raise failure(summary, failed=MetadataValue.json({key: str(error) for key, error in failed.items()}))
    metadata = {"count": len(outcomes), "seconds": round(time.perf_counter() - started, 3)}
    if len(outcomes) == 1:
        [outcome] = outcomes
        preview = base64.b64encode(outcome.output.read_bytes()).decode()
        metadata |= {
            **outcome.details,
            "output_type": jobs[0][1].name,
            "path": MetadataValue.path(str(outcome.output)),
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
    partitions_def=product_partitions,
    deps=["glb_production"],
    group_name="render",
    kinds={"blender"},
    code_version="2",
    pool="blender",
)
def blend_export(
    context: AssetExecutionContext, blender: Blender, database: Database, media: MediaStore
) -> MaterializeResult:
    """The scene a still is rendered from (model, materials, camera, lights), saved as .blend."""
    started = time.perf_counter()
    with classified(context, "blend_export"), tempfile.TemporaryDirectory() as workdir:
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
