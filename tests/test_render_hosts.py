"""The render host: its warm-up probe, cycles_device (gpu first with a logged fallback, cpu to opt
out), the ``render_device`` asset check, ``GET /render-hosts``, and the ``blender`` pool across
concurrent runs. This machine has no GPU: every probe here falls back to the CPU."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import test_assets
import yaml
from conftest import STEP_FIXTURES, as_role
from dagster import AssetKey, DagsterInstance, materialize
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError
from test_assets import acme, set_output_type

from automat_pipeline import opencascade
from automat_pipeline.api.deps import scoped_session
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import RenderHost, Tenant
from automat_pipeline.defs.render.assets import still
from automat_pipeline.embedded import REPO, api_url, database_url
from automat_pipeline.instance.storage import PooledPostgresStorage
from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver

HOST = "test-host"
resources, tenant_inbox, imported, converted = (
    test_assets.resources,
    test_assets.tenant_inbox,
    test_assets.imported,
    test_assets.converted,
)


@pytest.fixture
def host(monkeypatch):
    monkeypatch.setenv("AUTOMAT_RENDER_HOST", HOST)
    return HOST


def host_row(database_url: str) -> RenderHost | None:
    with session(database_url) as s:
        return s.get(RenderHost, HOST)


@pytest.mark.slow
def test_warm_up_probes_records_and_writes_the_health_file(env, host, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "automat_pipeline.cli", "render-host", "warm", "--status-file", str(tmp_path / "s.json")]
        + ["--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "AUTOMAT_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report == json.loads((tmp_path / "s.json").read_text())
    assert (report["host"], report["warm"], report["device"]) == (HOST, False, "CPU")
    assert report["fallback_reason"] == "no GPU device found"
    assert "[GPU_PROBE] No GPU found, falling back to CPU" in done.stderr  # Blender's own line, echoed
    row = host_row(env["AUTOMAT_DATABASE_URL"])
    assert (row.device, row.backend, row.cache_warm, row.probe["fallback_reason"]) == (
        "CPU",
        "CPU",
        False,
        "no GPU device found",
    )
    assert row.probed_at is not None and row.gpu_renders == row.cpu_renders == 0


def warnings_of(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.level == 30 and e.user_message]  # WARNING


@pytest.mark.slow
def test_cycles_device_gpu_warns_on_fallback_cpu_opts_out_and_the_host_counts(
    env, host, resources, imported, converted
):
    set_output_type(env["AUTOMAT_DATABASE_URL"], "still-web", kind="still", resolution=32, samples=1)
    asked_gpu = materialize([still], partition_key="acme|AS1", instance=imported, resources=resources)
    [check] = asked_gpu.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.severity.value) == ("render_device", False, "WARN")
    assert check.metadata["fell_back_to_cpu"].value == {"still-web": "no GPU device found"}
    assert check.metadata["host"].value == HOST
    [warning] = [w for w in warnings_of(imported, asked_gpu.run_id) if w.startswith("[GPU_PROBE]")]
    assert warning.startswith(f"[GPU_PROBE] still 'still-web' rendered on the CPU of {HOST}: no GPU device found")

    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # the tenant opts out
        s.execute(text('UPDATE tenants SET settings = \'{"cycles_device": "cpu"}\''))
    asked_cpu = materialize([still], partition_key="acme|AS1", instance=imported, resources=resources)
    [check] = asked_cpu.get_asset_check_evaluations()
    assert check.passed and check.metadata["fell_back_to_cpu"].value == {}
    assert not [w for w in warnings_of(imported, asked_cpu.run_id) if w.startswith("[GPU_PROBE]")]
    [image] = [e for e in asked_cpu.get_asset_materialization_events() if e.asset_key == AssetKey("still")]
    outputs = image.materialization.metadata["outputs"].value
    assert (outputs["still-web"]["cycles_device"], outputs["still-web"]["fallback_reason"]) == ("cpu", "CPU requested")

    row = host_row(env["AUTOMAT_DATABASE_URL"])
    assert (row.cpu_renders, row.gpu_renders) == (2, 0) and row.last_render_at is not None
    assert row.probe["fallback_reason"] == "no GPU device found"  # the cpu render probed nothing
    assert check.metadata["host_status"].value["cpu_renders"] == 2


def test_render_hosts_are_for_global_admins_only(api, world, env):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        probe = {"device": "NVIDIA H200", "backend": "OPTIX", "driver": "NVIDIA 580.95", "fallback_reason": None}
        repository.record_host_probe(s, "gpu-1", probe, warmed=True)
        repository.record_host_render(s, "gpu-1", {**probe, "cycles_device": "gpu"})
        repository.record_host_render(s, "gpu-1", {"device": "CPU", "backend": "CPU", "cycles_device": "cpu"})
    [status] = api.get("/render-hosts", headers=as_role(api, world, "ga")).json()
    assert status["name"] == "gpu-1" and status["last_probe"]["device"] == "NVIDIA H200"
    assert (status["device"], status["backend"], status["driver"]) == ("NVIDIA H200", "OPTIX", "NVIDIA 580.95")
    assert (status["gpu_available"], status["cache_warm"]) == (True, True)
    assert (status["renders_on_gpu"], status["renders_on_cpu"]) == (1, 1)
    assert api.get("/render-hosts", headers=as_role(api, world, "ta")).status_code == 403
    with scoped_session(api_url(env["AUTOMAT_DATABASE_URL"]), world["tenants"]["acme"]) as s:
        with pytest.raises(ProgrammingError, match="permission denied"):  # only through the global admins' route
            s.scalars(select(RenderHost)).all()


POOL_RUN = """
import sys
from dagster import DagsterInstance, materialize
from automat_pipeline.definitions import defs
from automat_pipeline.defs.render.assets import still
with DagsterInstance.get() as instance:
    print("RUN", materialize([still], partition_key=sys.argv[1], instance=instance, resources=defs.resources).run_id)
"""


@pytest.fixture
def dagster_storage_url(env, monkeypatch):
    """A fresh Dagster storage database on the test server, named as the shipped instance reads it."""
    server = env["AUTOMAT_DATABASE_URL"].replace("/automat_test?", "/postgres?")
    name = f"dagster_pool_{os.getpid()}_{time.monotonic_ns()}"
    url = database_url(server, name).replace("+psycopg:", "+psycopg2:")
    monkeypatch.setenv("AUTOMAT_DAGSTER_STORAGE_URL", url)
    return url


def test_a_pool_slot_is_claimed_by_one_of_many_steps_claiming_at_once(dagster_storage_url):
    """Eight steps, each through its own storage as eight run workers would, claim the one slot of a
    pool at the same moment, twenty times over: each time exactly one gets it. dagster-postgres's claim
    let up to four through."""
    storages = [PooledPostgresStorage(dagster_storage_url) for _ in range(8)]
    storages[0].event_log_storage.set_concurrency_slots("blender", 1)
    claimed_per_round = []

    def claim(start: threading.Barrier, storage: PooledPostgresStorage, run_id: str):
        start.wait()
        return storage.event_log_storage.claim_concurrency_slot("blender", run_id, "still")

    for round in range(20):
        start, run_ids = threading.Barrier(len(storages)), [f"run-{round}-{step}" for step in range(len(storages))]
        with ThreadPoolExecutor(len(storages)) as threads:
            statuses = list(threads.map(claim, [start] * len(storages), storages, run_ids))
        claimed_per_round.append(sum(status.is_claimed for status in statuses))
        for run_id in run_ids:
            storages[0].event_log_storage.free_concurrency_slots_for_run(run_id)
    assert claimed_per_round == [1] * 20


def shipped_instance(home: Path, pool_default_limit: int | None = None) -> DagsterInstance:
    """The shipped instance (dagster.yaml, its storage) in ``home``, without the run queue; with another
    pool default if one is given."""
    home.mkdir(exist_ok=True)
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    del config["run_coordinator"]
    if pool_default_limit is not None:
        config["concurrency"]["pools"]["default_limit"] = pool_default_limit
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(home))


def test_steps_first_using_a_pool_at_once_all_go_on_and_a_new_default_applies(dagster_storage_url, tmp_path):
    """Six instances' steps (as six run workers') use the ``blender`` pool for the first time at the
    same moment: each gets the default limit set up without an error (dagster-postgres failed all but
    one of them with InFailedSqlTransaction), and the pool has its two slots. A new default in
    dagster.yaml applies."""
    instances = [shipped_instance(tmp_path / "home", 2) for _ in range(6)]
    start = threading.Barrier(len(instances))

    def first_use(instance: DagsterInstance) -> None:
        start.wait()
        instance.event_log_storage.initialize_concurrency_limit_to_default("blender")

    with ThreadPoolExecutor(len(instances)) as threads:
        list(threads.map(first_use, instances))
    assert instances[0].event_log_storage.get_concurrency_info("blender").slot_count == 2
    with shipped_instance(tmp_path / "home-3", 3) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default("blender")
        assert instance.event_log_storage.get_concurrency_info("blender").slot_count == 3
    for instance in instances:
        instance.dispose()


@pytest.mark.slow
def test_blender_pool_limit_1_serialises_blender_across_concurrent_runs(env, dagster_storage_url, tmp_path):
    """Two runs at once on a real instance (the shipped PostgreSQL storage) whose ``blender`` pool allows
    one step: both runs are alive together, their Blender renders (by the times Blender reports) never."""
    home = tmp_path / "dagster_home"
    acme(env["AUTOMAT_DATABASE_URL"])
    set_output_type(env["AUTOMAT_DATABASE_URL"], "still-web", kind="still", resolution=64, samples=16)
    keys = ["P1", "P2"]
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant = s.scalar(select(Tenant).where(Tenant.slug == "acme"))
        for key in keys:
            s.execute(
                text(
                    "INSERT INTO products (tenant_id, pim_id, key, name, materials, attributes, active) "
                    "VALUES (:t, :k, :k, :k, '{}', '{}', true)"
                ),
                {"t": tenant.id, "k": key},
            )
    library = {m.name: m for m in LIBRARY}
    for key in keys:
        folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / key
        folder.mkdir(parents=True)
        opencascade.convert_step(
            STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp",
            folder / "model.glb",
            resolver=MaterialResolver(library, ALIASES),
            production_path=folder / "production.glb",
        )
    child_env = {**os.environ, "DAGSTER_HOME": str(home)}
    with shipped_instance(home) as instance:
        instance.add_dynamic_partitions("products", [f"acme|{key}" for key in keys])
        instance.event_log_storage.set_concurrency_slots("blender", 1)
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", POOL_RUN, f"acme|{key}"],
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for key in keys
        ]
        outcomes = [run.communicate(timeout=300) for run in runs]
        assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outcomes]
        run_ids = [next(line.split()[1] for line in out.splitlines() if line.startswith("RUN")) for out, _ in outcomes]
        records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
        blender = []
        for run_id in run_ids:
            [event] = [
                e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_step_materialization
            ]
            [render] = event.dagster_event.step_materialization_data.materialization.metadata["outputs"].value.values()
            blender.append((render["started_at"], render["finished_at"]))
        run_spans = [(records[r].start_time, records[r].end_time) for r in run_ids]
    (first, second) = sorted(blender)
    assert first[1] <= second[0], f"Blender renders overlapped: {blender}"
    late = max(start for start, _ in run_spans)
    assert late < second[0] and late < min(end for _, end in run_spans), (
        f"the runs did not run at the same time, so the pool was not tested: {run_spans}"
    )


@pytest.mark.slow
def test_gpu_bench_script_measures_against_the_cpu_figures(tmp_path):
    """bench/gpu_bench.sh, the prepared GPU benchmark, on this CPU at small sizes: the warm-up,
    the still and the turntable each in a cold Blender process, set beside the CPU figures."""
    figures = {
        "rows": [
            {"look": "studio", "engine": "cycles", "what": "still 48px", "in_blender": 10.0},
            {"look": "studio", "engine": "cycles", "what": "turntable 32px 2 frames", "in_blender": 20.0},
        ]
    }
    (tmp_path / "render.json").write_text(json.dumps(figures))
    done = subprocess.run(
        [str(REPO / "bench" / "gpu_bench.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "GPU_BENCH_STILL": "48 2",
            "GPU_BENCH_TURNTABLE": "32 2 1",
            "GPU_BENCH_OUT": str(tmp_path / "gpu_bench.json"),
            "GPU_BENCH_CPU_FIGURES": str(tmp_path / "render.json"),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("[GPU_PROBE] No GPU found, falling back to CPU") == 3
    rows = json.loads((tmp_path / "gpu_bench.json").read_text())["rows"]
    assert [r["what"] for r in rows] == ["warm-up.png", "still-48.png", "turntable-32.mp4"]
    assert all(r["result"]["device"] == "CPU" and r["result"]["cycles_device"] == "gpu" for r in rows)
    still, turntable = rows[1], rows[2]
    assert (still["result"]["size"], turntable["result"]["frames"]) == (48, 2)
    assert still["speedup"] == round(10.0 / still["result"]["render_seconds"], 2)
    assert turntable["cpu_seconds_here"] == 20.0
    assert (tmp_path / "gpu_bench.log").read_text().count("wall") == 3
