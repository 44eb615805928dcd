"""What the ``order_lines`` sensor makes of a run that did not end by itself: a worker that died, a
run that run monitoring stopped, a retry that takes a line over. Runs are ended here as Dagster's
code server and run monitoring end them (the same instance calls, on a real instance); the same
faults on the whole stack: tests/test_faults.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEvent, DagsterEventType, instance_for_test
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, BACKFILL_ID_TAG
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from automat_pipeline import tags
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import MediaAsset, Order, OrderHistory, OrderLine, Product
from automat_pipeline.definitions import defs
from automat_pipeline.defs.orders.sensor import RECOVERY, settle, settle_batches
from automat_pipeline.defs.resources import Database, MediaStore
from automat_pipeline.notify.models import Event

RETRIES = {"run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}}


@pytest.fixture
def instance(env):
    with instance_for_test(overrides=RETRIES) as instance:
        yield instance


@pytest.fixture
def line(env, world) -> int:
    """A submitted order's line, its product's still ``running`` in a run about to be created."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        order = Order(tenant_id=world["tenants"]["acme"], number="ORD-2026-000001", status="submitted")
        s.add(order)
        s.flush()
        line = OrderLine(
            tenant_id=order.tenant_id,
            order_id=order.id,
            product_id=world["products"]["6204-2RS"],
            output_type="still-web",
            state="queued",
        )
        s.add(line)
        s.flush()
        return line.id


def run_of(instance, env, line_id: int, launched: bool = True, **extra):
    """A run of the line's still, started, which began a render; ``launched``: the run the API
    launched for the line (a retry is not: Dagster starts it)."""
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={AssetKey("still")})
    run = instance.create_run_for_job(
        job, tags={tags.ORDER_LINE: str(line_id), tags.PARTITION: "acme|6204-2RS", tags.TENANT: "acme"}, **extra
    )
    instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name), run.run_id)
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        line = s.get(OrderLine, line_id)
        line.run_id = run.run_id if launched else line.run_id
        repository.record_started(s, line.tenant_id, line.product_id, "still", "still-web", run.run_id)
    return instance.get_run_by_id(run.run_id)


def sensor_tick(instance, env, *runs) -> list[str]:
    """What one tick of the sensor settles for ``runs``; the recovery lines it logged."""
    media = MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"])
    records = [instance.get_run_record_by_id(r.run_id) for r in runs]
    return settle(instance, Database(url=env["AUTOMAT_DATABASE_URL"]), media, records)[1]


def state(env, line_id: int) -> tuple:
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        line = s.get(OrderLine, line_id)
        media = s.scalar(select(MediaAsset).where(MediaAsset.asset == "still"))
        return (line.state, line.error_class, line.reason, line.run_id), (media.status, media.error_class)


def test_a_run_whose_worker_died_fails_as_worker_lost_with_its_render_and_is_reported_once(instance, env, line):
    run = run_of(instance, env, line)
    instance.add_run_tags(run.run_id, {"dagster/max_retries": "0"})  # this tenant retries nothing
    partial = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / ".partial" / run.run_id / "6204-2RS" / "still-still-web.png"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x89PNG half a render")
    # what the code server does when the run's worker process is gone
    crash = f"[DagsterApiServer] Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL)."
    instance.report_engine_event(crash, instance.get_run_by_id(run.run_id))
    instance.report_run_failed(instance.get_run_by_id(run.run_id))
    recoveries = sensor_tick(instance, env, run)
    (line_state, error_class, reason, _), media = state(env, line)
    assert (line_state, error_class, media) == ("failed", "worker_lost", ("failed", "worker_lost"))
    assert "signal 9" in reason
    assert not partial.parent.parent.exists()  # what the dead worker half wrote is gone
    [recovery] = recoveries
    assert (
        recovery.startswith(f"{RECOVERY} run {run.run_id} (acme|6204-2RS): worker_lost: ") and "not retried" in recovery
    )
    assert sensor_tick(instance, env, run) == []  # reported once, however often the run is looked at
    logged = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    assert [r.event_log_entry.dagster_event.message for r in logged].count(recovery) == 1
    with session(env["AUTOMAT_DATABASE_URL"]) as s:  # and the global admins get one staff alert
        alerts = s.scalars(select(Event).where(Event.key == f"alert.run_stopped:{run.run_id}")).all()
    assert [(a.subject, a.tenant_id, a.data["run_id"], a.data["details"]) for a in alerts] == [
        (None, None, run.run_id, recovery)
    ]


def test_a_run_is_settled_seeing_only_its_tenants_rows(instance, env, line, monkeypatch):
    """Row-level security binds the ``order_lines`` sensor (migration 0022): settling a run of acme's, a
    query that forgets its tenant filter reads and changes acme's rows only and no account secrets;
    the staff alert of its lost worker, which belongs to no tenant, is written all the same."""
    run = run_of(instance, env, line)
    instance.add_run_tags(run.run_id, {"dagster/max_retries": "0"})
    instance.report_run_failed(instance.get_run_by_id(run.run_id))  # its worker gone without a word
    seen, settle_media = {}, repository.settle_media

    def careless(s, *args):
        seen["user"] = s.scalar(text("SELECT current_user"))
        seen["tenants"] = sorted(s.scalars(text("SELECT slug FROM tenants")))  # no tenant filter
        seen["products"] = sorted(s.scalars(text("SELECT pim_id FROM products")))
        seen["changed"] = s.execute(text("UPDATE products SET name = name")).rowcount
        with pytest.raises(ProgrammingError, match="permission denied for table users"), s.begin_nested():
            s.execute(text("SELECT password_hash FROM users"))
        return settle_media(s, *args)

    monkeypatch.setattr(repository, "settle_media", careless)
    assert len(sensor_tick(instance, env, run)) == 1
    assert seen == {"user": "automat_pipeline", "tenants": ["acme"], "products": ["6204-2RS"], "changed": 1}
    (line_state, error_class, _, _), media = state(env, line)
    assert (line_state, error_class, media) == ("failed", "worker_lost", ("failed", "worker_lost"))
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        assert s.scalar(select(Event.tenant_id).where(Event.key == f"alert.run_stopped:{run.run_id}")) is None


def test_a_run_that_run_monitoring_stopped_for_its_time_limit_fails_as_timeout_not_cancelled(instance, env, line):
    run = run_of(instance, env, line)
    # what run monitoring does past max_runtime_seconds; the worker answers the termination itself
    instance.report_run_canceling(run, message="Canceling due to exceeding maximum runtime of 60 seconds.")
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # the interrupted render said "cancelled"
        line_row = s.get(OrderLine, line)
        repository.record_media(
            s, line_row.tenant_id, line_row.product_id, "still", "still-web", "cancelled", run_id=run.run_id
        )
    instance.report_run_canceled(instance.get_run_by_id(run.run_id))
    recoveries = sensor_tick(instance, env, run)
    (line_state, error_class, reason, _), media = state(env, line)
    assert (line_state, error_class, media) == ("failed", "timeout", ("failed", "timeout"))
    assert "maximum runtime of 60 seconds" in reason and len(recoveries) == 1


def test_a_retried_run_hands_its_line_over_and_the_history_says_why(instance, env, line):
    run = run_of(instance, env, line)
    instance.report_run_failed(run)  # its worker died; the tenant allows one retry (the instance's cap)
    assert instance.get_run_by_id(run.run_id).tags["dagster/will_retry"] == "true"
    [recovery] = sensor_tick(instance, env, run)
    assert "retried automatically" in recovery
    (line_state, error_class, _, run_id), _ = state(env, line)
    assert (line_state, error_class, run_id) == ("queued", "worker_lost", run.run_id)  # waiting for its retry
    retry = run_of(instance, env, line, launched=False, parent_run_id=run.run_id, root_run_id=run.run_id)
    sensor_tick(instance, env, run, retry)
    (line_state, error_class, _, run_id), _ = state(env, line)
    assert (line_state, error_class, run_id) == ("running", None, retry.run_id)
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=retry.job_name), retry.run_id
    )
    sensor_tick(instance, env, run, retry)
    assert state(env, line)[0][:2] == ("completed", None)
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        [history] = s.scalars(select(OrderHistory).where(OrderHistory.event == "line_retried")).all()
    assert history.lines == [
        {"line": line, "run_id": run.run_id, "retry_run_id": retry.run_id, "error_class": "worker_lost"}
    ]
    assert history.reason.startswith("worker_lost: ")


def test_a_write_that_fails_leaves_nothing_of_what_its_writer_wrote_beside_it(tmp_path):
    """OpenCascade writes ``model.bin.tmp`` next to the GLB it is writing: when the write fails
    (a full disk), that goes with the partial file, not only the file the block was asked for."""
    media = MediaStore(uploads_dir=str(tmp_path / "uploads"), media_dir=str(tmp_path / "media"))
    output = media.product_dir("acme", "SCREW") / "production.glb"
    with pytest.raises(OSError), media.writing("run-1", output) as [partial]:
        partial.write_bytes(b"glTF half")
        (partial.parent / "model.bin.tmp").write_bytes(b"half a buffer")
        raise OSError(28, "No space left on device")
    assert not output.exists() and not (tmp_path / "media" / "acme" / ".partial" / "run-1").exists()


def test_a_batchs_writers_in_threads_never_trip_over_each_others_folders(tmp_path):
    """A batch's conversions write at once, each under the run's ``.partial`` folder, which the one
    that finishes removes when it is empty: another's folders are made again, never lost."""
    media = MediaStore(uploads_dir=str(tmp_path / "uploads"), media_dir=str(tmp_path / "media"))
    errors = []

    def writer(n: int) -> None:
        for i in range(300):
            output = media.product_dir("acme", f"P{n}-{i}") / "model.glb"
            try:
                with media.writing("run-1", output) as [partial]:
                    partial.write_bytes(b"glTF")
            except OSError as error:
                errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list((tmp_path / "media" / "acme").glob("*/model.glb"))) == 8 * 300
    assert not (tmp_path / "media" / "acme" / ".partial" / "run-1").exists()


@pytest.fixture
def batch(env, world) -> dict[str, int]:
    """A submitted order's two thumbnail lines waiting in backfill ``bf-1``: product → line id."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant = world["tenants"]["acme"]
        screw = Product(tenant_id=tenant, pim_id="S-1", key="S-1", name="Screw", materials={}, attributes={})
        order = Order(tenant_id=tenant, number="ORD-2026-000001", status="submitted")
        s.add_all([screw, order])
        s.flush()
        lines = {
            key: OrderLine(
                tenant_id=tenant,
                order_id=order.id,
                product_id=product_id,
                output_type="thumbnail",
                state="queued",
                batch_id="bf-1",
            )
            for key, product_id in (("6204-2RS", world["products"]["6204-2RS"]), ("S-1", screw.id))
        }
        s.add_all(lines.values())
        s.flush()
        return {key: line.id for key, line in lines.items()} | {"order": order.id}


def line_row(env, line_id: int) -> OrderLine:
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        return s.get(OrderLine, line_id)


def test_a_batch_run_gives_each_line_its_own_products_outcome_and_output(instance, env, batch):
    instance.add_dynamic_partitions("products", ["acme|6204-2RS", "acme|S-1"])
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={AssetKey("thumbnail")})
    run = instance.create_run_for_job(
        job,
        tags={
            tags.ORDER: str(batch["order"]),
            BACKFILL_ID_TAG: "bf-1",
            ASSET_PARTITION_RANGE_START_TAG: "acme|6204-2RS",
            ASSET_PARTITION_RANGE_END_TAG: "acme|S-1",
            tags.TENANT: "acme",
            "dagster/max_retries": "0",
        },
    )
    instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name), run.run_id)
    sensor_tick(instance, env, run)  # the run takes both lines
    assert {line_row(env, batch[k]).run_id for k in ("6204-2RS", "S-1")} == {run.run_id}
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # one thumbnail made, one refused by Blender
        bearing, screw = (s.get(OrderLine, batch[k]) for k in ("6204-2RS", "S-1"))
        repository.record_media(
            s,
            bearing.tenant_id,
            bearing.product_id,
            "thumbnail",
            "thumbnail",
            "completed",
            run_id=run.run_id,
            path="/media/acme/6204-2RS/thumbnail.png",
            details={"engine": "workbench"},
        )
        repository.record_media(
            s,
            screw.tenant_id,
            screw.product_id,
            "thumbnail",
            "thumbnail",
            "failed",
            run_id=run.run_id,
            error_class="render_failed",
            reason="Blender found no mesh in S-1",
        )
    instance.report_run_failed(instance.get_run_by_id(run.run_id))  # the step failed for one product
    sensor_tick(instance, env, run)
    bearing, screw = (line_row(env, batch[k]) for k in ("6204-2RS", "S-1"))
    assert (bearing.state, bearing.error_class) == ("completed", None)
    assert [(o["asset"], o["product_id"]) for o in bearing.outputs] == [("thumbnail", bearing.product_id)]
    assert (screw.state, screw.error_class, screw.reason) == ("failed", "render_failed", "Blender found no mesh in S-1")
    assert [(o["asset"], o["product_id"]) for o in screw.outputs] == [("thumbnail", screw.product_id)]  # its own


def test_lines_a_cancelled_backfill_never_ran_are_cancelled_saying_so(instance, env, batch):
    instance.add_backfill(
        PartitionBackfill(
            "bf-1", BulkActionStatus.CANCELED, False, {}, time.time(), asset_selection=[AssetKey("thumbnail")]
        )
    )
    media = MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"])
    assert settle_batches(instance, Database(url=env["AUTOMAT_DATABASE_URL"]), media) == 2
    for key in ("6204-2RS", "S-1"):
        line = line_row(env, batch[key])
        assert (line.state, line.error_class, line.reason) == (
            "cancelled",
            "cancelled",
            "backfill bf-1 was cancelled in Dagster",
        )
    assert settle_batches(instance, Database(url=env["AUTOMAT_DATABASE_URL"]), media) == 0
