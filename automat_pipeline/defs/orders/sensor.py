"""``order_lines``: what each order line's run came to, written to the line in PostgreSQL.

Dagster knows a run's status; the client's job document must know it too, also while Dagster is
down and after its run storage is cleaned. Each tick reads the runs updated since the last one
(the cursor is an update timestamp), and for every run that carries an order line's tag records
the line's state (running, completed, failed, cancelled), the class and reason of a failure (the
failing step's classified ``Failure``, else the run's own failure: a worker lost, a launch that
never started), its outputs (the media rows the run wrote) and its times; in the same transaction,
each finished line's event and the summary of each order it finished (``notify.events``).
Recording is idempotent, and a finished line stays finished, so a re-evaluated tick changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

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

from automat_pipeline import tags
from automat_pipeline.db import repository
from automat_pipeline.db.models import OrderLine
from automat_pipeline.defs.resources import Database
from automat_pipeline.notify import events

STATES = {
    DagsterRunStatus.STARTED: "running",
    DagsterRunStatus.SUCCESS: "completed",
    DagsterRunStatus.FAILURE: "failed",
    DagsterRunStatus.CANCELED: "cancelled",
}
BATCH = 500


def failure_of(instance: DagsterInstance, run_id: str) -> tuple[str, str]:
    """The class and reason of a failed run: its first failed step's classified failure, else what
    failed the run itself (run monitoring: the worker is gone; an error before any step)."""
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        failure = record.event_log_entry.dagster_event.step_failure_data
        metadata = (failure.user_failure_data.metadata if failure.user_failure_data else None) or {}
        if "error_class" in metadata:
            return str(metadata["error_class"].value), str(metadata.get("reason", metadata["error_class"]).value)
        error = failure.error
        return "step_error", (error.message.strip().splitlines() or ["the step failed"])[-1][:2000] if error else ""
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records:
        message = record.event_log_entry.dagster_event.message or record.event_log_entry.user_message or ""
        lost = "worker" in message.lower() or "monitor" in message.lower() or "start timeout" in message.lower()
        return ("worker_lost" if lost else "run_failed"), message.strip()[:2000] or "the run failed"
    return "run_failed", "the run failed without a step failure"


def settle(instance: DagsterInstance, database: Database, records: list[RunRecord]) -> int:
    """Record the order lines of ``records``' runs; how many lines changed."""
    lines = [
        (r, int(r.dagster_run.tags[tags.ORDER_LINE]))
        for r in records
        if tags.ORDER_LINE in r.dagster_run.tags and r.dagster_run.status in STATES
    ]
    if not lines:
        return 0
    changed, finished = 0, []
    with database.session() as session:
        outputs = repository.runs_outputs(session, [r.dagster_run.run_id for r, _ in lines])
        for record, line_id in lines:
            run = record.dagster_run
            state = STATES[run.status]
            values = {"state": state}
            if record.start_time:
                values["started_at"] = datetime.fromtimestamp(record.start_time, UTC)
            if state != "running":
                values |= {"progress": None, "outputs": outputs[run.run_id]}
                if record.end_time:
                    values["ended_at"] = datetime.fromtimestamp(record.end_time, UTC)
                    values["seconds"] = round(record.end_time - (record.start_time or record.end_time), 3)
            if state == "failed":
                values["error_class"], values["reason"] = failure_of(instance, run.run_id)
            elif state == "cancelled":
                values["error_class"], values["reason"] = "cancelled", "the run was terminated"
            if repository.record_line_outcome(session, line_id, run.run_id, **values):
                changed += 1
                finished += [line_id] if state != "running" else []
        events.lines_settled(session, OrderLine.id.in_(finished))  # their events, and finished orders' summaries
    return changed


@sensor(minimum_interval_seconds=5, default_status=DefaultSensorStatus.RUNNING)
def order_lines(context: SensorEvaluationContext, database: Database):
    """Record what each order line's run came to, for the clients' job documents."""
    since = float(context.cursor) - 0.001 if context.cursor else 0.0  # again the last tick's last: idempotent
    records = context.instance.get_run_records(
        RunsFilter(updated_after=datetime.fromtimestamp(since, UTC)),
        order_by="update_timestamp",
        ascending=True,
        limit=BATCH,
    )
    if not records:
        return SkipReason("no run changed")
    changed = settle(context.instance, database, list(records))
    context.update_cursor(str(max(r.update_timestamp.timestamp() for r in records)))
    return SkipReason(f"{changed} order lines changed, from {len(records)} runs")
