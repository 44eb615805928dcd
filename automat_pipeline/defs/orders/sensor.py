"""``order_lines``: what each run came to, written where Automat's users read it, in PostgreSQL.

Dagster knows a run's status; the client's job document must know it too, also while Dagster is
down and after its run storage is cleaned. Each tick reads the runs updated since the last one
(the cursor is an update timestamp), and for every run of an order line (its tag; or a run of an
order's batch backfill, which first takes the lines of its products) records the line's state
(running, completed, failed, cancelled), the class and reason of a failure (the failing step's
classified ``Failure``, else the run's own failure: a worker lost, a launch that never started;
in a batch, its own product's), its outputs (the media rows the run wrote for its product) and
its times; in the same transaction, each finished line's event and the summary of each order it
finished (``notify.events``). Lines of a backfill that ended without running their product end
too (``settle_batches``).
Recording is idempotent, and a finished line stays finished, so a re-evaluated tick changes nothing.

A run that did not finish by itself is settled here too, order line or not: what it left
``running`` in ``media_assets`` gets its outcome, and what it left half-written is removed. A
failed run that Dagster retries (run retries: a lost worker, never a step's own failure) keeps
its line waiting for the retry, which takes the line over (``line_retried`` in the order's
history). A lost worker or one its time limit stopped is reported once (``recovered``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.events import RunFailureReason
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import RunRecord
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    WILL_RETRY_TAG,
)
from sqlalchemy import Row
from sqlalchemy.orm import Session

from automat_pipeline import tags
from automat_pipeline.db import repository
from automat_pipeline.db.database import as_tenant
from automat_pipeline.db.models import OrderLine
from automat_pipeline.defs.partitions import product_partitions
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.notify import events

log = logging.getLogger(__name__)
STATES = {
    DagsterRunStatus.STARTED: "running",
    DagsterRunStatus.SUCCESS: "completed",
    DagsterRunStatus.FAILURE: "failed",
    DagsterRunStatus.CANCELED: "cancelled",
}
BATCH = 500
RECOVERY = "[WORKER_RECOVERY]"
RECOVERED = frozenset({"worker_lost", "timeout"})  # a worker that died, or one its time limit stopped
RUNTIME_EXCEEDED = "maximum runtime"  # how run monitoring words a run it stopped for its time limit
OWN_FAILURES = (  # the failures a run's worker reports itself
    RunFailureReason.STEP_FAILURE,
    RunFailureReason.RUN_EXCEPTION,
    RunFailureReason.JOB_INITIALIZATION_FAILURE,
)


def failure_of(instance: DagsterInstance, run_id: str) -> tuple[str, str]:
    """The class and reason of a failed run: its first failed step's classified failure; else
    ``worker_lost`` if its worker did not report the failure itself (it died: killed, out of
    memory, its host gone, or it never started), ``run_failed`` for an error of the run's own."""
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        failure = record.event_log_entry.dagster_event.step_failure_data
        metadata = (failure.user_failure_data.metadata if failure.user_failure_data else None) or {}
        if "error_class" in metadata:
            return str(metadata["error_class"].value), str(metadata.get("reason", metadata["error_class"]).value)
        error = failure.error
        return "step_error", (error.message.strip().splitlines() or ["the step failed"])[-1][:2000] if error else ""
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records:
        event = record.event_log_entry.dagster_event
        message = (event.message or record.event_log_entry.user_message or "").strip()
        if getattr(event.event_specific_data, "failure_reason", None) in OWN_FAILURES:
            return "run_failed", message[:2000] or "the run failed"
        return "worker_lost", (_crash(instance, run_id) or message)[:2000] or "the run worker was lost"
    return "run_failed", "the run failed without a step failure"


def _stopped_for_runtime(instance: DagsterInstance, run_id: str) -> str | None:
    """Run monitoring's words, if it stopped the run for its run time limit (the run may end
    ``CANCELED``: the worker answers the termination before the monitor marks it failed)."""
    stopping = {DagsterEventType.RUN_CANCELING, DagsterEventType.RUN_FAILURE}
    for record in instance.get_records_for_run(run_id, of_type=stopping).records:
        message = record.event_log_entry.dagster_event.message or ""
        if RUNTIME_EXCEEDED in message:
            return message.strip()
    return None


def _crash(instance: DagsterInstance, run_id: str) -> str | None:
    """How the run's worker process ended, as the code server saw it ("… terminated by signal 9")."""
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False).records:
        message = record.event_log_entry.dagster_event.message or ""
        if "Run execution process for" in message:  # "[DagsterApiServer] Run execution process for …"
            return message.strip()
    return None


def outcome(instance: DagsterInstance, run: DagsterRun) -> tuple[str, str | None, str | None]:
    """A run's state as a line keeps it, and the class and reason of a failure or cancellation."""
    state = STATES[run.status]
    if state in ("failed", "cancelled") and (stopped := _stopped_for_runtime(instance, run.run_id)):
        return "failed", "timeout", stopped  # stopped by run monitoring: no one cancelled it
    if state == "failed":
        return (state, *failure_of(instance, run.run_id))
    if state == "cancelled":
        return state, "cancelled", "the run was terminated"
    return state, None, None


def recovered(instance: DagsterInstance, run: DagsterRun, error_class: str, reason: str) -> str | None:
    """The one place a lost or stuck worker is reported: ``[WORKER_RECOVERY]`` in the run's event log
    (the run's page shows it), once per run; the line, or None if it was reported before.

    ``settle`` raises its staff alert (``alert``)."""
    logged = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    if any((r.event_log_entry.dagster_event.message or "").startswith(RECOVERY) for r in logged):
        return None
    retry = "retried automatically" if run.tags.get(WILL_RETRY_TAG) == "true" else "not retried"
    where = run.tags.get(tags.PARTITION, run.job_name)
    line = f"{RECOVERY} run {run.run_id} ({where}): {error_class}: {reason}; {retry}"
    instance.report_engine_event(line, run)
    log.warning(line)
    return line


def alert(session, run: DagsterRun, line: str) -> None:
    """The staff alert of a recovery (global admins): ``alert.run_stopped``, keyed by the run, so the
    ``pipeline_events`` sensor, which sees the runs run monitoring stopped, never writes it twice."""
    where = run.tags.get(tags.PARTITION, "no partition")
    events.record(
        session,
        "alert.run_stopped",
        None,
        tenant_id=None,
        key=f"alert.run_stopped:{run.run_id}",
        message=f"run {run.run_id} ({run.job_name}, {where}) lost its worker or its time",
        details=line,
        run_id=run.run_id,
        job=run.job_name,
        tenant=run.tags.get(tags.TENANT),
    )


class Partitions:
    """The product partitions a run renders: its partition, or its range in Dagster's order of the
    products' partitions (read once, when a tick first meets a range)."""

    def __init__(self, instance: DagsterInstance):
        self.instance, self.order = instance, None

    def of(self, run: DagsterRun) -> list[str]:
        if tags.PARTITION in run.tags:
            return [run.tags[tags.PARTITION]]
        self.order = self.order or self.instance.get_dynamic_partitions(product_partitions.name)
        start, end = run.tags[ASSET_PARTITION_RANGE_START_TAG], run.tags[ASSET_PARTITION_RANGE_END_TAG]
        return self.order[self.order.index(start) : self.order.index(end) + 1]


def line_values(record: RunRecord, outcome_: tuple, media: Row | None) -> dict:
    """What a line of the run came to: the run's outcome, or, for a line of a batch run, its own
    product's (the step recorded it), which may differ from the run's."""
    run = record.dagster_run
    state, error_class, reason = outcome_
    if media is not None and state in ("completed", "failed") and media.status in ("completed", "failed"):
        state, error_class, reason = media.status, media.error_class, media.reason
    values = {"state": state}
    if record.start_time:
        values["started_at"] = datetime.fromtimestamp(record.start_time, UTC)
    if outcome_[0] == "failed" and run.tags.get(WILL_RETRY_TAG) == "true":
        values |= {"state": "queued", "progress": None}  # its retry takes the line over
    elif state != "running":
        values["progress"] = None
        if record.end_time:
            values["ended_at"] = datetime.fromtimestamp(record.end_time, UTC)
            values["seconds"] = round(record.end_time - (record.start_time or record.end_time), 3)
    if error_class:
        values["error_class"], values["reason"] = error_class, reason
    return values


def settle(
    instance: DagsterInstance, database: Database, media: MediaStore, records: list[RunRecord]
) -> tuple[int, list[str]]:
    """Record what ``records``' runs came to; how many order lines changed, and the recovery lines.

    A run of an order's batch (``api.launcher.launch_batch``) first takes the lines of its products.
    Each tenant's runs are settled in a part of the transaction that sees that tenant's rows only (the
    pipeline's role, migration 0022); a run over no known tenant's partition sees none (a recovery's
    staff alert, which belongs to no tenant, is written all the same)."""
    runs = [r for r in records if r.dagster_run.status in STATES]
    outcomes = {r.dagster_run.run_id: outcome(instance, r.dagster_run) for r in runs}
    by_tenant: dict[str | None, list[RunRecord]] = defaultdict(list)
    for record in runs:
        by_tenant[tags.run_tenant(record.dagster_run.tags)].append(record)
    changed, recoveries, order = 0, [], Partitions(instance)
    with database.session() as session:
        known = repository.tenants_by_slug(session)
        for slug, mine in by_tenant.items():
            as_tenant(session, known[slug].id if slug in known else None)
            lines_changed, recovered_here = _settle(instance, session, media, mine, outcomes, order)
            changed, recoveries = changed + lines_changed, recoveries + recovered_here
    return changed, recoveries


def _settle(
    instance: DagsterInstance,
    session: Session,
    media: MediaStore,
    runs: list[RunRecord],
    outcomes: dict,
    partitions: Partitions,
) -> tuple[int, list[str]]:
    """``settle`` for one tenant's runs."""
    ordered = [r for r in runs if {tags.ORDER, tags.ORDER_LINE} & r.dagster_run.tags.keys()]
    changed, recoveries, finished = 0, [], []
    for record in runs:
        run = record.dagster_run
        state, error_class, reason = outcomes[run.run_id]
        if state in ("failed", "cancelled"):
            repository.settle_media(session, run.run_id, state, error_class, reason)
            media.discard_partials(run.run_id)
        if error_class in RECOVERED and (line := recovered(instance, run, error_class, reason)):
            recoveries.append(line)
            alert(session, run, line)
    for record in ordered:
        run = record.dagster_run
        if run.parent_run_id:  # a retry takes over its parent's lines
            parent = instance.get_run_by_id(run.parent_run_id)
            failed = outcome(instance, parent)[1:] if parent else ("run_failed", "the retried run is gone")
            repository.adopt_retry(session, run.parent_run_id, run.run_id, *failed)
        elif BACKFILL_ID_TAG in run.tags and tags.ORDER_LINE not in run.tags:
            repository.claim_batch_lines(session, run.tags[BACKFILL_ID_TAG], run.run_id, partitions.of(run))
    run_ids = [r.dagster_run.run_id for r in ordered]
    outputs = repository.runs_outputs(session, run_ids)
    made = repository.media_outcomes(session, run_ids)
    records_by_id = {r.dagster_run.run_id: r for r in ordered}
    for line in repository.lines_of_runs(session, run_ids):
        record = records_by_id[line.run_id]
        batch = tags.ORDER_LINE not in record.dagster_run.tags
        own = made.get((line.run_id, line.product_id, line.output_type)) if batch else None
        values = line_values(record, outcomes[line.run_id], own)
        if values["state"] not in ("running", "queued"):
            values["outputs"] = [o for o in outputs[line.run_id] if o["product_id"] == line.product_id]
        if repository.record_line_outcome(session, line.id, line.run_id, **values):
            changed += 1
            finished += [line.id] if values["state"] not in ("running", "queued") else []
    events.lines_settled(session, OrderLine.id.in_(finished))  # their events, and finished orders' summaries
    return changed, recoveries


def settle_batches(instance: DagsterInstance, database: Database, media: MediaStore) -> int:
    """Lines of a backfill that ended without a run for their product (an operator cancelled it, or
    it failed) end too: cancelled or failed, saying so. Its runs are settled first, so a line whose
    run this sensor had not seen yet is not ended wrongly. How many lines ended."""
    with database.session() as session:
        waiting = repository.waiting_batches(session)
    ended = 0
    for batch_id, tenant_id in waiting:
        backfill = instance.get_backfill(batch_id)
        if backfill is not None and backfill.status in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING):
            continue
        settle(instance, database, media, list(instance.get_run_records(RunsFilter(tags={BACKFILL_ID_TAG: batch_id}))))
        if backfill is not None and backfill.status == BulkActionStatus.CANCELED:
            outcome_ = ("cancelled", "cancelled", f"backfill {batch_id} was cancelled in Dagster")
        else:
            status = backfill.status.value if backfill else "gone"
            outcome_ = ("failed", "run_failed", f"backfill {batch_id} ended ({status}) without a run")
        with database.session() as session:
            as_tenant(session, tenant_id)
            lines = repository.end_waiting(session, batch_id, *outcome_)
            events.lines_settled(session, OrderLine.id.in_(lines))
        ended += len(lines)
    return ended


@sensor(minimum_interval_seconds=5, default_status=DefaultSensorStatus.RUNNING)
def order_lines(context: SensorEvaluationContext, database: Database, media: MediaStore):
    """Record what each run came to: order lines, renders and conversions its worker left, recoveries."""
    since = float(context.cursor) - 0.001 if context.cursor else 0.0  # again the last tick's last: idempotent
    records = context.instance.get_run_records(
        RunsFilter(updated_after=datetime.fromtimestamp(since, UTC)),
        order_by="update_timestamp",
        ascending=True,
        limit=BATCH,
    )
    ended = settle_batches(context.instance, database, media) if len(records) < BATCH else 0
    if not records:
        return SkipReason(f"no run changed; {ended} lines of ended backfills ended" if ended else "no run changed")
    changed, recoveries = settle(context.instance, database, media, list(records))
    for line in recoveries:
        context.log.warning(line)
    context.update_cursor(str(max(r.update_timestamp.timestamp() for r in records)))
    return SkipReason(f"{changed + ended} order lines changed, from {len(records)} runs")
