"""``pipeline_events``: what the pipeline's runs came to, as events, and the alerts only Dagster sees.

Each tick reads the runs that ended since the last one (the cursor is an update time, as in
``order_lines``: Dagster's ``@run_status_sensor`` takes five runs per tick, one transaction each,
which a 1,000-product upload outruns) and records, in one transaction:

- each catalogue import the run made: ``catalog.imported`` (counts, the rejected rows' reasons, the
  report's link) or ``catalog.import_failed``, to the workbook's uploader;
- a failed STEP conversion: ``conversion.failed`` with the step's classified class and reason;
- ``alert.gpu_fallback``: a render of a run routed to a GPU host (``automat/render-host``) that
  Blender ran on the CPU (its ``fallback_reason``);
- ``alert.blender_missing``: a render step that could not start Blender;
- ``alert.run_stopped``: a run that run monitoring failed or cancelled (never started, worker lost,
  over its maximum runtime);

and ``alert.run_stalled`` for every run queued or running longer than ``AUTOMAT_ALERT_STALLED_MINUTES``.
Every event's key comes from what it is about (an import, a run, a host and hour), so a tick seen
twice writes nothing twice. Each run's events are written as the pipeline's role seeing the run's
tenant's rows only (migration 0022), the staff alerts, which belong to no tenant, seeing none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.storage.dagster_run import RunRecord
from sqlalchemy import select
from sqlalchemy.orm import Session

from automat_pipeline import tags
from automat_pipeline.db import repository
from automat_pipeline.db.database import as_tenant
from automat_pipeline.db.models import CatalogImport, MediaAsset, ProductFile
from automat_pipeline.db.repository import tenant_and_product
from automat_pipeline.defs.orders.sensor import failure_of
from automat_pipeline.defs.resources import Database
from automat_pipeline.errors import AutomatError
from automat_pipeline.keys import SEPARATOR
from automat_pipeline.notify import events, messages
from automat_pipeline.settings import deployment_limits

ENDED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
UNFINISHED = {  # a run's status, in an alert's words
    DagsterRunStatus.QUEUED: "queued",
    DagsterRunStatus.NOT_STARTED: "launched and not started",
    DagsterRunStatus.STARTING: "starting",
    DagsterRunStatus.STARTED: "running",
}
CAD_STEPS = frozenset({"step_file", "cad_conversion"})
MONITORING = (  # how Dagster's run monitoring words the runs it ends (dagster/_daemon/monitoring)
    "Run timed out due to taking longer than",
    "Detected run worker status",
    "Exceeded maximum runtime",
)
BATCH = 200


@sensor(minimum_interval_seconds=10, default_status=DefaultSensorStatus.RUNNING)
def pipeline_events(context: SensorEvaluationContext, database: Database):
    """Events from the runs that ended (imports, failed conversions) and the alerts Dagster sees."""
    since = float(context.cursor) - 0.001 if context.cursor else 0.0  # again the last tick's last: idempotent
    records = context.instance.get_run_records(
        RunsFilter(updated_after=datetime.fromtimestamp(since, UTC), statuses=ENDED),
        order_by="update_timestamp",
        ascending=True,
        limit=BATCH,
    )
    written = 0
    with database.session() as session:
        known = repository.tenants_by_slug(session)
        for record in records:  # each in a part of the transaction that sees its tenant's rows only
            slug = tags.run_tenant(record.dagster_run.tags)
            as_tenant(session, known[slug].id if slug in known else None)
            written += len(run_events(context.instance, session, record))
        as_tenant(session, None)  # the staff alerts belong to no tenant
        written += len(stalled(context.instance, session, deployment_limits().alert_stalled_minutes))
    if records:
        context.update_cursor(str(max(r.update_timestamp.timestamp() for r in records)))
    return SkipReason(f"{written} events from {len(records)} ended runs")


def run_events(instance: DagsterInstance, session: Session, record: RunRecord) -> list[int]:
    """The events of one ended run (their ids; none new when seen before)."""
    run = record.dagster_run
    written = []
    for made in session.scalars(select(CatalogImport).where(CatalogImport.trigger.endswith(f":{run.run_id}"))):
        written += _imported(session, made)
    host = run.tags.get(tags.RENDER_HOST)
    hour = datetime.fromtimestamp(record.end_time or record.update_timestamp.timestamp(), UTC).strftime("%Y-%m-%dT%H")
    if host:
        written += _gpu_fallback(session, run, host, hour)
    if run.status == DagsterRunStatus.FAILURE:
        step = _failed_step(instance, run.run_id)
        error_class, reason = failure_of(instance, run.run_id)
        if step in CAD_STEPS and SEPARATOR in run.tags.get(tags.PARTITION, ""):
            written += _conversion_failed(session, run, step, error_class, reason)
        if error_class == "missing_blender":
            where = host or "the default run launcher's host"
            written += _alert(
                session,
                "alert.blender_missing",
                f"alert.blender_missing:{where}:{hour}",
                f"Blender cannot be started on {where}",
                f"{reason}\nRun {run.run_id} ({run.tags.get(tags.PARTITION, run.job_name)}).",
                host=where,
                run_id=run.run_id,
            )
    stopped = _stopped_by_monitoring(instance, run)
    if stopped:
        written += _alert(
            session,
            "alert.run_stopped",
            f"alert.run_stopped:{run.run_id}",
            f"run monitoring stopped run {run.run_id} ({run.job_name}, {run.tags.get(tags.PARTITION, 'no partition')})",
            stopped,
            run_id=run.run_id,
            job=run.job_name,
            tenant=run.tags.get(tags.TENANT),
        )
    return written


def stalled(instance: DagsterInstance, session: Session, minutes: int) -> list[int]:
    """``alert.run_stalled`` for each run queued or running for more than ``minutes``, once per run."""
    before = datetime.now(UTC) - timedelta(minutes=minutes)
    written = []
    for record in instance.get_run_records(RunsFilter(statuses=list(UNFINISHED), created_before=before), limit=100):
        run = record.dagster_run
        written += _alert(
            session,
            "alert.run_stalled",
            f"alert.run_stalled:{run.run_id}",
            f"run {run.run_id} ({run.job_name}) is {UNFINISHED[run.status]} for more than {minutes} minutes",
            f"Created {record.create_timestamp:%Y-%m-%d %H:%M} UTC; {run.tags.get(tags.PARTITION, 'no partition')}.",
            run_id=run.run_id,
            status=run.status.value,
            tenant=run.tags.get(tags.TENANT),
        )
    return written


def _alert(session: Session, type: str, key: str, message: str, details: str, **data) -> list[int]:
    """A system alert (for global admins)."""
    event_id = events.record(session, type, None, tenant_id=None, key=key, message=message, details=details, **data)
    return [event_id] if event_id else []


def _imported(session: Session, made: CatalogImport) -> list[int]:
    owner, upload_id = events.uploader(session, made.tenant_id, made.filename, made.sha256)
    data = {"import_id": made.id, "filename": made.filename, "upload_id": upload_id}
    if made.status == "ok":
        data |= {
            "counts": made.counts,
            "rejected": made.outcomes.get("rejected", [])[: messages.MAX_LISTED],
            "report": f"/uploads/{upload_id}/report" if upload_id and made.report_path else None,
        }
    else:
        data["error"] = made.error
    event_id = events.record(
        session,
        "catalog.imported" if made.status == "ok" else "catalog.import_failed",
        ("upload", upload_id) if upload_id else ("catalog_import", made.id),
        tenant_id=made.tenant_id,
        owner_id=owner,
        key=f"catalog:{made.id}",
        **data,
    )
    return [event_id] if event_id else []


def _conversion_failed(session: Session, run, step: str, error_class: str, reason: str) -> list[int]:
    try:
        tenant, product = tenant_and_product(session, run.tags[tags.PARTITION])
    except AutomatError:  # the product is gone from the catalogue: nobody to tell
        return []
    upload = session.scalar(
        select(ProductFile)
        .where(ProductFile.tenant_id == tenant.id, ProductFile.product_id == product.id, ProductFile.kind == "step")
        .order_by(ProductFile.recorded_at.desc())
        .limit(1)
    )
    filename = upload.filename if upload else (product.step_filename or f"{product.key}.step")
    owner, upload_id = events.uploader(session, tenant.id, filename, upload.sha256 if upload else None)
    event_id = events.record(
        session,
        "conversion.failed",
        ("product", product.id),
        tenant_id=tenant.id,
        owner_id=owner,
        key=f"conversion.failed:{run.run_id}",
        product_id=product.id,
        pim_id=product.pim_id,
        filename=filename,
        upload_id=upload_id,
        step=step,
        error_class=error_class,
        reason=reason,
        run_id=run.run_id,
    )
    return [event_id] if event_id else []


def _gpu_fallback(session: Session, run, host: str, hour: str) -> list[int]:
    """A render of this run, routed to GPU host ``host``, that ran on the CPU: once per host and hour."""
    fell_back = session.scalars(
        select(MediaAsset).where(
            MediaAsset.run_id == run.run_id,
            MediaAsset.asset.in_(sorted(tags.RENDER_STEPS)),
            MediaAsset.status == "completed",
            MediaAsset.details["fallback_reason"].as_string().is_not(None),
        )
    ).first()
    if fell_back is None:
        return []
    details = fell_back.details
    return _alert(
        session,
        "alert.gpu_fallback",
        f"alert.gpu_fallback:{host}:{hour}",
        f"GPU host {host} rendered on the CPU: {details['fallback_reason']}",
        f"{fell_back.asset} {fell_back.output_type} of run {run.run_id} ({details.get('engine')}, "
        f"{details.get('device')}, backend {details.get('backend')}).",
        host=host,
        run_id=run.run_id,
        engine=details.get("engine"),
        device=details.get("device"),
        fallback_reason=details["fallback_reason"],
    )


def _failed_step(instance: DagsterInstance, run_id: str) -> str | None:
    found = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE, limit=1).records
    return found[0].event_log_entry.step_key if found else None


def _stopped_by_monitoring(instance: DagsterInstance, run) -> str | None:
    """Run monitoring's message, if it ended this run."""
    if run.status == DagsterRunStatus.SUCCESS:
        return None
    ended = (DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED, DagsterEventType.RUN_CANCELING)
    for of_type in ended:
        for found in instance.get_records_for_run(run.run_id, of_type=of_type).records:
            message = found.event_log_entry.dagster_event.message or ""
            if message.startswith(MONITORING) or "exceeding maximum runtime" in message:
                return message.strip()[:2000]
    return None
