"""Render assets per tenant|product: Blender output from the production GLB, per output type.

Every render's outcome (completed, failed, cancelled) is recorded in ``media_assets``, where the
API's media browser finds it; every completed render is counted for its render host
(``render_hosts``), and its device is the ``render_device`` asset check.
"""

import base64
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    DagsterExecutionInterruptedError,
    MaterializeResult,
    MetadataValue,
    asset,
)

from automat_pipeline import materials, policy, render_host, tags
from automat_pipeline.blender import render_args
from automat_pipeline.db import repository
from automat_pipeline.db.models import RenderHost
from automat_pipeline.defs.failures import batch_failure, classified, record_outcomes
from automat_pipeline.defs.partitions import product_partitions
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.errors import AutomatError
from automat_pipeline.keys import tenant_of
from automat_pipeline.output_types import OutputType, check_limits
from automat_pipeline.settings import Settings, deployment_limits
from automat_pipeline.step_params import RenderParams
from automat_pipeline.tenant_settings import TenantSettings


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
        key = partition_key or context.partition_key
        with database.session(tenant_of(key)) as session:
            tenant, product = repository.tenant_and_product(session, key)
            self.tenant_id, self.product_id, self.tenant = tenant.id, product.id, tenant.slug
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
            with self.database.session(self.tenant) as session:
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
        with self.database.session(self.tenant) as session:
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
            if status == "completed" and step in DEVICE_CHECKED:
                served(self.context, session, step, output_type, values["details"])


DEVICE_CHECKED = ("thumbnail", "still", "turntable")  # blend_export saves a scene: nothing is rendered


def served(context: AssetExecutionContext, session, step: str, output_type: OutputType, details: dict) -> None:
    """A completed render, counted for this host; a Cycles render that fell back to the CPU though
    its output type asked for the GPU is a warning in the run log (cycles_device cpu opts out)."""
    host = render_host.name(Settings())
    repository.record_host_render(session, host, details)
    if details.get("cycles_device") == "gpu" and details.get("device") == "CPU":
        context.log.warning(
            f"[GPU_PROBE] {step} {output_type.name!r} rendered on the CPU of {host}: {details.get('fallback_reason')}"
            " (the output type's or the tenant's cycles_device: cpu renders on the CPU without this warning)"
        )


def device_check(asset: str, database: Database, renders: dict[str, dict]) -> AssetCheckResult:
    """``render_device``: passes when every render ran on a GPU, or on the CPU because its output
    type asked for it; warns otherwise, with the host's GPU status."""
    fell_back = {
        name: details.get("fallback_reason")
        for name, details in renders.items()
        if details.get("device") == "CPU" and details.get("cycles_device") != "cpu"
    }
    name = render_host.name(Settings())
    with database.session() as session:
        host = session.get(RenderHost, name)
        status = (
            {
                column: getattr(host, column)
                for column in ("device", "backend", "driver", "cache_warm", "gpu_renders", "cpu_renders")
            }
            if host
            else {}
        )
    return AssetCheckResult(
        check_name="render_device",
        asset_key=asset,
        passed=not fell_back,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "host": name,
            "fell_back_to_cpu": MetadataValue.json(fell_back),
            "devices": MetadataValue.json(
                {name: {k: d.get(k) for k in ("device", "backend", "driver")} for name, d in renders.items()}
            ),
            "host_status": MetadataValue.json(status),
        },
    )


def device_spec(asset: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        "render_device",
        asset=asset,
        description="the render ran on the render host's GPU, or on the CPU because its output type asked for it "
        "(warns on a CPU fallback; metadata: the host's GPU status)",
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
        },
        check_results=[device_check(kind, database, outputs)],
    )


@asset(
    partitions_def=product_partitions,
    deps=["glb_production"],
    group_name="render",
    kinds={"blender", "png"},
    code_version="6",
    pool="blender",
    backfill_policy=BackfillPolicy.single_run(),
    check_specs=[device_spec("thumbnail")],
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
    # Each product's own path and render details; in a batch where some failed, the others are
    # materialized and the upload sensor learns which failed.
    done = {
        keys[o.output]: {"thumbnail": {**o.details, "path": MetadataValue.path(str(o.output))}}
        for o in outcomes
        if not o.error
    }
    record_outcomes(context, done, failed)
    if failed:
        raise batch_failure("thumbnails_failed", "thumbnails", failed, len(context.partition_keys))
    metadata = {"count": len(outcomes), "seconds": round(time.perf_counter() - started, 3)}
    check = device_check("thumbnail", database, {keys[o.output]: o.details for o in outcomes})
    if len(outcomes) == 1:
        [outcome] = outcomes
        preview = base64.b64encode(outcome.output.read_bytes()).decode()
        metadata |= {
            **outcome.details,
            "output_type": jobs[0][1].name,
            "path": MetadataValue.path(str(outcome.output)),
            "preview": MetadataValue.md(f"![thumbnail](data:image/png;base64,{preview})"),
        }
    return MaterializeResult(metadata=metadata, check_results=[check])


@asset(
    partitions_def=product_partitions,
    deps=["glb_production"],
    group_name="render",
    kinds={"blender", "png"},
    code_version="3",
    pool="blender",
    check_specs=[device_spec("still")],
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
    code_version="4",
    pool="blender",
    check_specs=[device_spec("turntable")],
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
