"""Pipeline events from Dagster's own runs on a real instance: the order_lines sensor's line events
and one summary per order, imports and failed conversions told to the uploader, and the staff
alerts (Blender missing, a GPU host on the CPU, runs stopped by run monitoring or stalled); none
written twice, whether a tick is evaluated again or the daemon restarts without its cursor."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trimesh
from conftest import as_role, login
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    asset,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from dagster._core.test_utils import create_run_for_test
from dagster._daemon.monitoring.run_monitoring import monitor_starting_run
from openpyxl import Workbook
from sqlalchemy import func, select, text

from automat_pipeline import tags
from automat_pipeline.db.database import session
from automat_pipeline.db.models import Order, OrderLine, User
from automat_pipeline.defs.catalog.assets import catalog_report, product_catalog
from automat_pipeline.defs.failures import classified
from automat_pipeline.defs.notify import sensors
from automat_pipeline.defs.notify.schedules import hourly_digests, notification_digests
from automat_pipeline.defs.notify.sensors import pipeline_events, stalled
from automat_pipeline.defs.orders.sensor import order_lines
from automat_pipeline.defs.partitions import product_partitions, tenant_partitions
from automat_pipeline.defs.render.assets import thumbnail
from automat_pipeline.defs.resources import Blender, Database, MediaStore
from automat_pipeline.defs.uploads.sensor import upload_sensor
from automat_pipeline.errors import AutomatError
from automat_pipeline.notify.deliverer import Deliverer
from automat_pipeline.notify.models import Event, Notification
from automat_pipeline.settings import Settings


@pytest.fixture
def resources(env):
    return {
        "database": Database(url=env["AUTOMAT_DATABASE_URL"]),
        "media": MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"]),
        "blender": Blender(executable=env["AUTOMAT_BLENDER"], scripts_dir=env["AUTOMAT_BLENDER_SCRIPTS"]),
    }


@pytest.fixture
def deliver(env):
    deliverer = Deliverer(Settings(database_url=env["AUTOMAT_DATABASE_URL"], media_dir=env["AUTOMAT_MEDIA_DIR"]))
    yield lambda: deliverer.tick(wait=True)
    deliverer.close()


def user_id(env, email: str) -> int:
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        return s.scalar(select(User.id).where(User.email == email))


def events_by_type(env) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        for event in s.scalars(select(Event).order_by(Event.id)):
            found.setdefault(event.type, []).append(event)
    return found


@asset(partitions_def=product_partitions)
def rendered(context) -> None:
    """Stands in for a render step that succeeds."""


@asset(partitions_def=product_partitions)
def timed_out(context) -> None:
    """Stands in for a render step that fails with a class, through the one error path."""
    with classified(context, "timed_out"):
        raise AutomatError("timeout", "Blender did not finish in 300 s")


def test_lines_and_their_order_summary_are_written_once_from_the_runs(api, world, env, deliver):
    client = login(api, "client@acme.example")
    order = api.post("/orders", headers=client).json()
    instance = DagsterInstance.ephemeral()
    key = "acme|6204-2RS"
    instance.add_dynamic_partitions(product_partitions.name, [key])
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.get(Order, order["id"]).status = "submitted"
        s.get(Order, order["id"]).submitted_at = datetime.now(UTC)
        lines = [
            OrderLine(
                tenant_id=world["tenants"]["acme"],
                order_id=order["id"],
                product_id=world["products"]["6204-2RS"],
                output_type=t,
                state="queued",
            )
            for t in ("thumbnail", "still-web")
        ]
        s.add_all(lines)
        s.flush()
        line_ids = [line.id for line in lines]
    for line_id, step in zip(line_ids, (rendered, timed_out), strict=True):
        run = materialize(
            [step],
            partition_key=key,
            instance=instance,
            tags={tags.ORDER: str(order["id"]), tags.ORDER_LINE: str(line_id)},
            raise_on_error=False,
        )
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            s.get(OrderLine, line_id).run_id = run.run_id  # as the launcher records it
    database = {
        "database": Database(url=env["AUTOMAT_DATABASE_URL"]),
        "media": MediaStore(uploads_dir=env["AUTOMAT_UPLOADS_DIR"], media_dir=env["AUTOMAT_MEDIA_DIR"]),
    }
    context = build_sensor_context(instance=instance, resources=database)
    order_lines(context)
    order_lines(build_sensor_context(instance=instance, cursor=context.cursor, resources=database))  # again
    order_lines(build_sensor_context(instance=instance, resources=database))  # a daemon that lost its cursor
    found = events_by_type(env)
    assert [e.subject for e in found["order_line.completed"]] == [f"order_line:{line_ids[0]}"]
    [failed] = found["order_line.failed"]
    assert (failed.data["error_class"], failed.data["reason"]) == ("timeout", "Blender did not finish in 300 s")
    [summary] = found["order.completed"]
    assert summary.owner_id == order["created_by"] and summary.data["number"] == order["number"]
    assert (summary.data["state"], summary.data["succeeded"], summary.data["failures"]) == (
        "completed_with_failures",
        1,
        {"timeout": 1},
    )
    assert summary.data["failed_lines"] == [
        {
            "line": line_ids[1],
            "pim_id": "6204-2RS",
            "output_type": "still-web",
            "error_class": "timeout",
            "reason": "Blender did not finish in 300 s",
        }
    ]
    deliver()
    deliver()
    [note] = api.get("/notifications", headers=client).json()["items"]
    assert note["title"] == f"{order['number']} finished: 1 of 2 succeeded, 1 failed (1 timeout)"
    assert len(api.get("/notifications", headers=as_role(api, world, "pm")).json()["items"]) == 1


def test_each_runs_events_are_written_seeing_only_its_tenants_rows(world, env, monkeypatch):
    """Row-level security binds the ``pipeline_events`` sensor (migration 0022): a query that forgets its
    tenant filter sees the rows of the tenant whose run it is looking at, and none while it looks for
    stalled runs (the staff alerts belong to no tenant)."""
    instance = DagsterInstance.ephemeral()
    partitions = ["acme|6204-2RS", "beta|B-1"]
    instance.add_dynamic_partitions(product_partitions.name, partitions)
    for key in partitions:
        assert materialize([rendered], partition_key=key, instance=instance).success
    seen, run_events, find_stalled = [], sensors.run_events, sensors.stalled

    def unfiltered(s) -> tuple:
        return s.scalar(text("SELECT current_user")), sorted(s.scalars(text("SELECT pim_id FROM products")))

    def careless_run(instance, s, record):
        seen.append((record.dagster_run.tags[tags.PARTITION], *unfiltered(s)))
        return run_events(instance, s, record)

    def careless_stalled(instance, s, minutes):
        seen.append(("stalled", *unfiltered(s)))
        return find_stalled(instance, s, minutes)

    monkeypatch.setattr(sensors, "run_events", careless_run)
    monkeypatch.setattr(sensors, "stalled", careless_stalled)
    pipeline_events(
        build_sensor_context(instance=instance, resources={"database": Database(url=env["AUTOMAT_DATABASE_URL"])})
    )
    assert seen == [
        ("acme|6204-2RS", "automat_pipeline", ["6204-2RS"]),
        ("beta|B-1", "automat_pipeline", ["B-1"]),
        ("stalled", "automat_pipeline", []),
    ]


def workbook(rows: list[list]) -> bytes:
    book = Workbook()
    for row in [["PIM-ID", "Name", "CAD file"], *rows]:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_import_with_rejected_rows_tells_the_uploader(api, world, env, resources, deliver):
    client = login(api, "client@acme.example")
    upload = api.post(
        "/uploads",
        headers=client,
        files={
            "file": ("products.xlsx", workbook([["P-1", "One", None], ["P-2", None, None], ["P-3", "Three", None]]))
        },
    ).json()
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])
    assert materialize(
        [product_catalog, catalog_report], partition_key="acme", instance=instance, resources=resources
    ).success
    database = {"database": resources["database"]}
    pipeline_events(build_sensor_context(instance=instance, resources=database))
    pipeline_events(build_sensor_context(instance=instance, resources=database))  # without a cursor: nothing twice
    [imported] = events_by_type(env)["catalog.imported"]
    assert imported.owner_id == user_id(env, "client@acme.example") and imported.subject == f"upload:{upload['id']}"
    assert imported.data["counts"]["rejected"] == 1 and imported.data["report"] == f"/uploads/{upload['id']}/report"
    deliver()
    [note] = api.get("/notifications", headers=client).json()["items"]
    assert (
        note["title"] == "products.xlsx imported: 3 rows, 2 created, 0 updated, 0 unchanged, 0 deactivated, 1 rejected"
    )
    assert "- Sheet!3: " in note["body"] and "name" in note["body"].lower()
    assert f"/uploads/{upload['id']}/report" in note["body"]
    assert api.get(note["data"]["report"], headers=client).status_code == 200
    other = login(api, "client2@acme.example")
    assert api.get("/notifications", headers=other).json()["items"] == []
    assert [e["type"] for e in api.get("/activity", headers=other).json()["items"]] == []  # not theirs


def test_a_failed_conversion_tells_the_files_uploader(api, world, env, resources, deliver):
    from automat_pipeline.defs.cad.assets import cad_conversion, step_file

    client = login(api, "client@acme.example")
    api.post("/uploads", headers=client, files={"file": ("products.xlsx", workbook([["BAD-1", "Bad", "bad.stp"]]))})
    api.post(
        "/uploads", headers=client, files={"file": ("bad.stp", b"ISO-10303-21;\nHEADER;\nENDSEC;\nEND-ISO-10303-21;\n")}
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(tenant_partitions.name, ["acme"])
    assert materialize([product_catalog], partition_key="acme", instance=instance, resources=resources).success
    instance.add_dynamic_partitions(product_partitions.name, ["acme|BAD-1"])
    failed = materialize(
        [step_file, cad_conversion],
        partition_key="acme|BAD-1",
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not failed.success
    pipeline_events(build_sensor_context(instance=instance, resources={"database": resources["database"]}))
    [event] = events_by_type(env)["conversion.failed"]
    assert (event.data["pim_id"], event.data["filename"]) == ("BAD-1", "bad.stp")
    assert (event.data["step"], event.data["error_class"]) == ("cad_conversion", "damaged_geometry")  # no DATA section
    deliver()
    notes = {n["kind"]: n for n in api.get("/notifications", headers=client).json()["items"]}
    assert (
        notes["conversion_failed"]["title"]
        == f"bad.stp (BAD-1) could not be converted: {event.data['error_class']}: {event.data['reason']}"
    )


def test_a_missing_blender_on_a_gpu_host_alerts_the_global_admins(api, world, env, resources, deliver):
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "6204-2RS"
    folder.mkdir(parents=True)
    trimesh.creation.box().export(folder / "production.glb")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(product_partitions.name, ["acme|6204-2RS"])
    gone = resources | {
        "blender": Blender(executable="/nonexistent/blender", scripts_dir=env["AUTOMAT_BLENDER_SCRIPTS"])
    }
    for _ in range(2):  # two runs within the hour: one alert
        run = materialize(
            [thumbnail],
            partition_key="acme|6204-2RS",
            instance=instance,
            resources=gone,
            tags={tags.RENDER_HOST: "gpu-1"},
            raise_on_error=False,
        )
        assert not run.success
    pipeline_events(build_sensor_context(instance=instance, resources={"database": resources["database"]}))
    [alert] = events_by_type(env)["alert.blender_missing"]
    assert alert.tenant_id is None and alert.data["host"] == "gpu-1" and "/nonexistent/blender" in alert.data["details"]
    deliver()
    ga = login(api, "ga@acme.example")
    [note] = api.get("/notifications", headers=ga).json()["items"]
    assert note["title"] == "Alert: Blender cannot be started on gpu-1"
    assert api.get("/notifications", headers=as_role(api, world, "ta")).json()["items"] == []  # the system's


@pytest.mark.slow
def test_a_render_on_a_gpu_host_that_ran_on_the_cpu_alerts_the_global_admins(api, world, env, resources, deliver):
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "6204-2RS"
    folder.mkdir(parents=True)
    trimesh.creation.box().export(folder / "production.glb")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(product_partitions.name, ["acme|6204-2RS"])
    run = materialize(
        [thumbnail],
        partition_key="acme|6204-2RS",
        instance=instance,
        resources=resources,
        tags={tags.RENDER_HOST: "gpu-1"},
    )
    assert run.success
    pipeline_events(build_sensor_context(instance=instance, resources={"database": resources["database"]}))
    [alert] = events_by_type(env)["alert.gpu_fallback"]
    assert alert.data["host"] == "gpu-1" and alert.data["device"] == "CPU" and alert.data["fallback_reason"]
    deliver()
    [note] = api.get("/notifications", headers=login(api, "ga@acme.example")).json()["items"]
    assert note["title"].startswith("Alert: GPU host gpu-1 rendered on the CPU: ")


def test_runs_stopped_by_run_monitoring_or_stalled_alert_the_global_admins(api, world, env, deliver):
    overrides = {"run_monitoring": {"enabled": True, "start_timeout_seconds": 0}}
    with instance_for_test(overrides=overrides) as instance:
        never = create_run_for_test(
            instance,
            job_name="product_media",
            status=DagsterRunStatus.NOT_STARTED,
            tags={tags.PARTITION: "acme|6204-2RS"},
        )
        monitor_starting_run(
            instance, instance.get_run_record_by_id(never.run_id), logging.getLogger("test")
        )  # Dagster's own
        assert instance.get_run_by_id(never.run_id).status == DagsterRunStatus.FAILURE
        waiting = create_run_for_test(instance, job_name="product_renders", status=DagsterRunStatus.NOT_STARTED)
        database = {"database": Database(url=env["AUTOMAT_DATABASE_URL"])}
        pipeline_events(build_sensor_context(instance=instance, resources=database))
        with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
            stalled(instance, s, minutes=0)  # waiting since its creation: past any threshold
            stalled(instance, s, minutes=0)
    found = events_by_type(env)
    [stopped] = found["alert.run_stopped"]
    assert stopped.data["run_id"] == never.run_id and "to start" in stopped.data["details"]
    assert [e.data["run_id"] for e in found["alert.run_stalled"]] == [waiting.run_id]
    deliver()
    titles = {n["title"] for n in api.get("/notifications", headers=login(api, "ga@acme.example")).json()["items"]}
    assert titles == {
        f"Alert: run monitoring stopped run {never.run_id} (product_media, acme|6204-2RS)",
        f"Alert: run {waiting.run_id} (product_renders) is launched and not started for more than 0 minutes",
    }


def test_the_hourly_schedule_builds_the_digests(api, world, env, deliver):
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    hourly = {"in_app": "hourly", "email": "never"}
    api.put("/notifications/preferences", headers=client, json={"orders": hourly, "imports": hourly, "alerts": hourly})
    for reason in ("one", "two"):
        order = api.post("/orders", headers=client).json()
        api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": reason})
    deliver()
    next_hour = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    context = build_schedule_context(scheduled_execution_time=next_hour)
    request = hourly_digests(context)
    assert request.run_key == f"hourly:{context.scheduled_execution_time.isoformat()}"
    for _ in range(2):  # the same tick twice: one digest
        result = notification_digests.execute_in_process(
            run_config=request.run_config, resources={"database": Database(url=env["AUTOMAT_DATABASE_URL"])}
        )
        assert result.success
    [digest] = api.get("/notifications", headers=client).json()["items"]
    assert digest["title"] == "2 notifications (hourly digest)" and "was rejected: one" in digest["body"]
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        assert s.scalar(select(func.count()).select_from(Notification).where(Notification.kind == "digest")) == 1


def test_each_file_version_in_the_inbox_is_received_once(api, world, env, resources):
    client = login(api, "client@acme.example")
    uploaded = api.post("/uploads", headers=client, files={"file": ("a.xlsx", workbook([["P-1", "One", None]]))}).json()
    instance = DagsterInstance.ephemeral()
    cursor = None
    for _ in range(2):
        result = upload_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        cursor = getattr(result, "cursor", cursor)
    upload_sensor(build_sensor_context(instance=instance, resources=resources))  # a daemon without its cursor
    [received] = events_by_type(env)["upload.received"]
    assert received.subject == f"upload:{uploaded['id']}" and received.data["filename"] == "a.xlsx"
    [event] = api.get("/activity", headers=client, params={"type": "upload.received"}).json()["items"]
    assert event["id"] == received.id
