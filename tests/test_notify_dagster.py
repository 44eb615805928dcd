"""The deliverer's watch on Dagster itself, asked of a real webserver and daemon: a code location that
does not load and a sensor whose ticks fail alert the global admins, once an hour while it lasts.
(A sensor inside the code location could not report the location failing to load.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import as_role, free_port, wait_for
from sqlalchemy import select

from automat_pipeline.api.dagster_client import LOCATION, DagsterClient
from automat_pipeline.db.database import session
from automat_pipeline.embedded import REPO
from automat_pipeline.notify.deliverer import Deliverer
from automat_pipeline.notify.models import Event
from automat_pipeline.settings import Settings

pytestmark = pytest.mark.slow

FAILING_SENSOR = """
from dagster import DefaultSensorStatus, Definitions, sensor


@sensor(minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
def catalogue_share():
    raise RuntimeError("the catalogue share is gone")


defs = Definitions(sensors=[catalogue_share])
"""


@pytest.fixture
def dagster(tmp_path: Path, env):
    """A webserver and a daemon over a workspace of two locations: ours, whose sensor fails every
    tick, and one that does not load."""
    (tmp_path / "sensors.py").write_text(FAILING_SENSOR)
    (tmp_path / "broken.py").write_text("import a_module_that_is_not_installed\n")
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n"
        f"  - python_file: {{relative_path: sensors.py, location_name: {LOCATION}}}\n"
        "  - python_file: {relative_path: broken.py, location_name: broken}\n"
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    environment = {"DAGSTER_HOME": str(home), "PATH": str(REPO / ".venv" / "bin")}
    port, workspace, bin_dir = free_port(), str(tmp_path / "workspace.yaml"), REPO / ".venv" / "bin"
    processes = [
        subprocess.Popen(
            [bin_dir / "dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-w", workspace],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [bin_dir / "dagster-daemon", "run", "-w", workspace],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        client = DagsterClient(f"http://127.0.0.1:{port}/graphql")
        wait_for("the webserver", client.healthy)
        yield client
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def test_a_code_location_that_does_not_load_and_a_failing_sensor_alert_the_global_admins(api, world, env, dagster):
    problems = wait_for("a failed tick", lambda: len(found := dagster.problems()) == 2 and found)
    assert sorted((kind, name) for kind, name, _ in problems) == [
        ("code_location", "broken"),
        ("sensor", "catalogue_share"),
    ]
    settings = Settings(  # no disk-space alert, whatever this host's disk holds: not what this test is about
        database_url=env["AUTOMAT_DATABASE_URL"], media_dir=env["AUTOMAT_MEDIA_DIR"], alert_min_free_gb=0
    )
    deliverer = Deliverer(settings, dagster)
    try:
        written = deliverer.watch()
        assert deliverer.watch() == []  # again within the hour: nothing new
        deliverer.tick(wait=True)
    finally:
        deliverer.close()
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        alerts = {e.type: e for e in s.scalars(select(Event).where(Event.id.in_(written)))}
    assert set(alerts) == {"alert.code_location_failed", "alert.sensor_failed"}
    assert "a_module_that_is_not_installed" in alerts["alert.code_location_failed"].data["message"]
    assert "the catalogue share is gone" in alerts["alert.sensor_failed"].data["message"]
    assert all(alert.tenant_id is None for alert in alerts.values())
    titles = [n["title"] for n in api.get("/notifications", headers=as_role(api, world, "ga")).json()["items"]]
    assert sorted(titles) == sorted(f"Alert: {alert.data['message']}" for alert in alerts.values())
    assert api.get("/notifications", headers=as_role(api, world, "ta")).json()["items"] == []
