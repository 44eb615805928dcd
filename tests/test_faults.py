"""Faults injected into the real stack, and what must come of each (README: Faults).

Marked ``faults`` (``make test-faults`` runs them alone) and ``slow``. Every wait is bounded and
generous: the outcome is asserted, never how fast it came.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import trimesh
import uvicorn
from conftest import PASSWORD, PASSWORD_HASH, STEP_FIXTURES, free_port, wait_for
from openpyxl import Workbook
from PIL import Image
from sqlalchemy import func, select
from stack import Postgres, Stack, descendants, gone

from automat_pipeline.api.app import create_app
from automat_pipeline.api.dagster_client import ASSET_JOB, DagsterClient
from automat_pipeline.db import repository
from automat_pipeline.db.database import migrate, session, set_role_password
from automat_pipeline.db.models import (
    CatalogImport,
    MediaAsset,
    Order,
    OrderLine,
    Product,
    ProductFile,
    TenantOutputType,
    Upload,
    User,
)
from automat_pipeline.embedded import api_url, database_url, start_server
from automat_pipeline.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def own_database(tmp_path: Path):
    """A domain database on a PostgreSQL server of its own (the session's stays up): its URL and server."""
    data = Path(tempfile.mkdtemp(prefix="automat-pg-outage-")) / "data"
    server, admin_url = start_server(data, cleanup_mode="delete")
    url = database_url(admin_url, "automat")
    migrate(url)
    set_role_password(url, api_url(url))
    with session(url) as s, s.begin():
        tenant = repository.tenant(s, "acme")
        s.add(
            User(
                email="client@acme.example",
                email_normalized="client@acme.example",
                password_hash=PASSWORD_HASH,
                role="client",
                tenant_id=tenant.id,
            )
        )
        product = Product(tenant_id=tenant.id, pim_id="SCREW-1", key="SCREW-1", name="Screw", materials={})
        s.add(product)
        s.flush()
        s.add(
            ProductFile(
                tenant_id=tenant.id,
                product_id=product.id,
                filename="screw.step",
                kind="step",
                sha256="0" * 64,
                size_bytes=1,
                status="ok",
            )
        )
    yield url, Postgres(data)
    server.cleanup()


@dataclass
class Client:
    """A client ordering and uploading in rounds, each request sent again after a 503's Retry-After."""

    api: str
    token: str
    product_id: int
    step: bytes
    name: str
    answers: list[tuple[str, int, str | None]] = field(default_factory=list)  # route, status, Retry-After
    orders: list[int] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    def request(self, method: str, route: str, **kwargs) -> httpx.Response:
        deadline = time.monotonic() + 180
        while True:
            try:
                response = httpx.request(
                    method,
                    f"{self.api}{route}",
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=60,
                    **kwargs,
                )
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{route}: the API did not answer for 180 s"
                time.sleep(1)
                continue
            self.answers.append((route.split("/")[1], response.status_code, response.headers.get("Retry-After")))
            if response.status_code != 503:
                return response
            assert time.monotonic() < deadline, f"{route}: still 503 after 180 s"
            time.sleep(float(response.headers.get("Retry-After", "1")))

    def round(self, number: int) -> None:
        order = self.request("POST", "/orders")
        assert order.status_code == 201, order.text
        order_id = order.json()["id"]
        line = {"product_id": self.product_id, "output_type": "thumbnail"}
        assert self.request("POST", f"/orders/{order_id}/lines", json=line).status_code == 201
        submitted = self.request("POST", f"/orders/{order_id}/submit")
        assert submitted.status_code in (200, 409), submitted.text  # 409: a 503'd submission had committed
        self.orders.append(order_id)
        name = f"{self.name}-{number}.step"
        upload = self.request("POST", "/uploads", files={"file": (name, self.step)})
        assert upload.status_code == 201, upload.text
        self.uploads.append(upload.json()["filename"])


def test_the_api_answers_503_while_postgresql_restarts_and_nothing_is_lost(own_database, tmp_path):
    url, postgres = own_database
    settings = Settings(
        database_url=url,
        api_database_url=api_url(url),
        jwt_secret="a-secret-that-is-long-enough-for-hs256",
        dagster_graphql_url="http://127.0.0.1:9/graphql",  # Dagster is down too: lines wait as pending
        uploads_dir=tmp_path / "uploads",
        media_dir=tmp_path / "media",
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, launcher=False), port=port, log_level="critical"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    api = f"http://127.0.0.1:{port}"
    login = httpx.post(f"{api}/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    with session(url) as s:
        product_id = s.scalar(select(Product.id))
    step = (STEP_FIXTURES / "occt" / "screw.step").read_bytes()
    clients = [Client(api, login["access_token"], product_id, step, f"client{n}") for n in range(3)]
    outage = threading.Event()
    recovered = threading.Event()

    def work(client: Client) -> None:
        number = 0
        while not recovered.is_set() or number < 6:  # rounds before, during and after the outage
            client.round(number)
            number += 1
            if number == 2:
                outage.wait(120)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        postgres.stop()
        outage.set()
        time.sleep(10)  # the database stays away while the clients go on
        postgres.start()
        recovered.set()
        for thread in threads:
            thread.join(300)
            assert not thread.is_alive(), "a client did not finish its rounds after the database came back"
    finally:
        server.should_exit = True
    answers = [a for c in clients for a in c.answers]
    assert not [a for a in answers if a[1] >= 500 and a[1] != 503], "a server error other than 503"
    unavailable = [a for a in answers if a[1] == 503]
    assert unavailable, "no request met the outage"
    assert {retry for _, _, retry in unavailable} == {"5"}  # every 503 says when to come back
    with session(url) as s:
        submitted = s.scalars(select(Order.id).where(Order.status == "submitted")).all()
        lines = s.execute(select(OrderLine.order_id, func.count()).group_by(OrderLine.order_id)).all()
        recorded = s.scalars(select(Upload.filename)).all()
    assert sorted(submitted) == sorted(o for c in clients for o in c.orders)  # every order once, submitted
    assert {n for _, n in lines} == {1}  # no line twice
    sent = sorted(u for c in clients for u in c.uploads)
    assert sorted(set(recorded)) == sent and len(sent) == len(set(sent))  # every upload recorded
    inbox = tmp_path / "uploads" / "acme"
    assert all((inbox / name).read_bytes() == step for name in sent)  # and its bytes in the inbox
    assert not [p for p in inbox.iterdir() if p.name.startswith(".")]  # no partial upload left behind
    measured(
        "PostgreSQL stopped and restarted during order submissions and uploads",
        "503 with Retry-After (never 500) while away, recovers by itself, every order and upload kept",
        True,
        len(sent) - len(set(recorded)),
        requests=len(answers),
        answered_503=len(unavailable),
        server_errors=len([a for a in answers if a[1] >= 500 and a[1] != 503]),
    )


# The whole stack: the embedded PostgreSQL, webserver, daemon and API on one AUTOMAT_HOME, shared by
# the tests below in this order (each leaves it healthy for the next).

STEPS = {"SCREW": ("occt", "screw.step"), "BIG": ("analysis-situs", "repatch-hpdc.stp")}
OUTPUT_TYPES = {  # small renders; still-slow lasts long enough to be killed, still-hang's limit is short
    "thumbnail": {"kind": "thumbnail", "resolution": 64, "engine": "workbench"},
    "still-slow": {"kind": "still", "resolution": 256, "samples": 256, "engine": "cycles", "denoising": False},
    "still-hang": {"kind": "still", "resolution": 64, "engine": "workbench", "timeout_seconds": 30},
}
RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId status jobName tags { key value } } } } }"""
EVENTS = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { __typename
  ... on MessageEvent { message } } } } }"""
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
FAULTS: list[dict] = []  # what each fault came to, for bench/run.py faults (AUTOMAT_FAULTS_REPORT)


def measured(fault: str, expected: str, survived: bool, lost: int, **figures) -> None:
    FAULTS.append({"fault": fault, "expected": expected, "survived": survived, "lost": lost, **figures})


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if os.environ.get("AUTOMAT_FAULTS_REPORT"):
        Path(os.environ["AUTOMAT_FAULTS_REPORT"]).write_text(json.dumps(FAULTS, indent=1))


def workbook(path: Path, rows: list[tuple[str, str | None]]) -> None:
    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["PIM-ID", "Name", "CAD-Datei"])
    for pim, step in rows:
        sheet.append([pim, f"Product {pim}", step])
    book.save(path)


def put_step(inbox: Path, pim: str) -> Path:
    folder, name = STEPS[pim]
    shutil.copyfile(STEP_FIXTURES / folder / name, inbox / name)
    return inbox / name


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("stack") / "home"
    stack = Stack(home)
    stack.prepare()
    try:
        stack.cli("tenant", "create", "acme")
        stack.cli(
            "user", "create", "--tenant", "acme", "--role", "client", "--email", "client@acme.example", stdin=PASSWORD
        )
        with session(stack.settings.database_url) as s, s.begin():
            tenant = repository.tenant(s, "acme")
            s.add_all(TenantOutputType(tenant_id=tenant.id, name=n, settings=v) for n, v in OUTPUT_TYPES.items())
        inbox = home / "uploads" / "acme"
        workbook(inbox / "products.xlsx", [("SCREW", "screw.step"), ("BIG", "repatch-hpdc.stp")])
        put_step(inbox, "SCREW")
        stack.start()
        wait_for("the stack answering", stack.healthy, 600, 2)
        wait_for("SCREW converted, with its thumbnail", lambda: media(stack, "SCREW").get("thumbnail") == "completed")
        yield stack
    finally:
        stack.stop()
        stack.postgres.stop()


def runs(stack: Stack, **tags) -> list[dict]:
    found = stack.graphql(RUNS, filter={"tags": [{"key": k, "value": v} for k, v in tags.items()]})
    return [r | {"tags": {t["key"]: t["value"] for t in r["tags"]}} for r in found["runsOrError"]["results"]]


def run(stack: Stack, run_id: str) -> dict:
    [found] = [r for r in runs_by_id(stack, run_id)]
    return found


def runs_by_id(stack: Stack, *run_ids: str) -> list[dict]:
    found = stack.graphql(RUNS, filter={"runIds": list(run_ids)})["runsOrError"]["results"]
    return [r | {"tags": {t["key"]: t["value"] for t in r["tags"]}} for r in found]


def messages(stack: Stack, run_id: str) -> list[str]:
    return [e.get("message") or "" for e in stack.graphql(EVENTS, id=run_id)["logsForRun"]["events"]]


def worker(stack: Stack, run_id: str) -> psutil.Process | None:
    """The run's worker process, by the pid its log names."""
    for message in messages(stack, run_id):
        if found := re.search(r"Started process for run \(pid: (\d+)\)", message):
            return psutil.Process(int(found[1]))
    return None


def ended(stack: Stack, run_id: str) -> dict | None:
    found = run(stack, run_id)
    return found if found["status"] in FINISHED else None


def retry_of(stack: Stack, run_id: str) -> dict | None:
    return next(iter(runs(stack, **{"dagster/parent_run_id": run_id})), None)


def media(stack: Stack, pim: str) -> dict[str, str]:
    """The product's media records: step → status."""
    with session(stack.settings.database_url) as s:
        rows = s.execute(select(MediaAsset.asset, MediaAsset.status).join(Product).where(Product.pim_id == pim)).all()
    return dict(rows)


def records(stack: Stack, run_id: str) -> list[tuple[str, str, str | None]]:
    with session(stack.settings.database_url) as s:
        return s.execute(
            select(MediaAsset.asset, MediaAsset.status, MediaAsset.error_class).where(MediaAsset.run_id == run_id)
        ).all()


def partials(stack: Stack, run_id: str) -> list[Path]:
    return [p for p in (stack.settings.media_dir).glob(f"*/.partial/{run_id}/**/*") if p.is_file()]


def client(stack: Stack) -> str:
    login = stack.api("POST", "/auth/login", json={"email": "client@acme.example", "password": PASSWORD})
    return login.json()["access_token"]


def order(stack: Stack, token: str, pim: str, output_type: str) -> dict:
    with session(stack.settings.database_url) as s:
        product_id = s.scalar(select(Product.id).where(Product.pim_id == pim))
    created = stack.api("POST", "/orders", token).json()
    line = {"product_id": product_id, "output_type": output_type}
    assert stack.api("POST", f"/orders/{created['id']}/lines", token, json=line).status_code == 201
    return stack.api("POST", f"/orders/{created['id']}/submit", token).json()


def document(stack: Stack, token: str, order_id: int) -> dict:
    return stack.api("GET", f"/orders/{order_id}", token).json()


def test_a_run_worker_killed_during_a_conversion(stack):
    """The worker dies mid-conversion: the run fails within a bounded time, the conversion child goes
    with it, nothing half-written stays, the lost worker is reported, and the retry converts it."""
    put_step(stack.home / "uploads" / "acme", "BIG")
    [first] = wait_for("BIG's conversion run", lambda: runs(stack, **{"dagster/partition": "acme|BIG"}), 300)
    dying = wait_for("its worker", lambda: worker(stack, first["runId"]), 300, 0.5)

    def conversion() -> list[psutil.Process]:  # the child the forkserver forked for this conversion
        servers = descendants(dying, "forkserver")
        return [p for p in servers if p.ppid() in {s.pid for s in servers}]

    children = wait_for("the conversion child", conversion, 300, 0.2)
    for child in children:  # stopped, it can neither finish nor notice: only the kernel ends it
        child.suspend()
    dying.kill()
    killed = time.monotonic()
    failed = wait_for("the run failed", lambda: ended(stack, first["runId"]), 180)
    detected = time.monotonic() - killed
    assert failed["status"] == "FAILURE"
    assert wait_for("the conversion child gone", lambda: gone(children), 60)
    recovery = wait_for(
        "[WORKER_RECOVERY] in the run's log",
        lambda: [m for m in messages(stack, first["runId"]) if m.startswith("[WORKER_RECOVERY]")],
        120,
    )
    assert ": worker_lost: " in recovery[0] and "signal 9 (SIGKILL)" in recovery[0]
    assert "retried automatically" in recovery[0]
    assert not partials(stack, first["runId"])  # what the dead worker half-wrote is gone
    retry = wait_for("the automatic retry", lambda: retry_of(stack, first["runId"]), 180)
    retried = wait_for("the retry finished", lambda: ended(stack, retry["runId"]), 900)
    assert retried["status"] == "SUCCESS" and retried["tags"]["dagster/retry_number"] == "1"
    assert {a: st for a, st, _ in records(stack, retry["runId"])} == {
        "glb_geometry": "completed",
        "glb_production": "completed",
        "thumbnail": "completed",
    }
    folder = stack.settings.media_dir / "acme" / "BIG"
    assert trimesh.load(folder / "production.glb", force="scene").geometry  # whole, and readable
    measured(
        "kill -9 of the run worker during a conversion",
        "run failed (worker_lost), conversion child gone, no partial file, one retry completes it",
        True,
        0,
        detected_s=round(detected, 1),
        recovered_s=round(time.monotonic() - killed, 1),
    )


def test_a_run_worker_killed_during_a_render(stack):
    """An order's render loses its worker: Blender goes with it, the line says so, and the retry
    renders it: the order completes."""
    token = client(stack)
    submitted = order(stack, token, "SCREW", "still-slow")
    [line] = submitted["lines"]
    first = line["run_id"]
    dying = wait_for("its worker", lambda: worker(stack, first), 300, 0.5)
    blender = wait_for("Blender rendering", lambda: descendants(dying, "render.py"), 300, 0.2)
    time.sleep(3)  # well into the render
    for process in blender:  # stopped, it can neither finish nor notice: only the kernel ends it
        process.suspend()
    dying.kill()
    killed = time.monotonic()
    assert wait_for("the run failed", lambda: ended(stack, first), 180)["status"] == "FAILURE"
    detected = time.monotonic() - killed
    assert wait_for("Blender gone", lambda: gone(blender), 60)
    wait_for(  # the sensor settles the run: its record, its partial folder, the report
        "[WORKER_RECOVERY] in the run's log",
        lambda: [m for m in messages(stack, first) if m.startswith("[WORKER_RECOVERY]")],
        120,
    )
    assert not partials(stack, first)  # the half-rendered PNG is gone
    done = wait_for(
        "the order completed by the retry",
        lambda: (
            (d := document(stack, token, submitted["id"]))["state"]
            in ("completed", "failed", "completed_with_failures")
            and d
        ),
        900,
        3,
    )
    [line] = done["lines"]
    assert (done["state"], line["state"], line["error_class"]) == ("completed", "completed", None)
    [retried] = [h for h in done["history"] if h["event"] == "line_retried"]
    assert retried["lines"][0]["run_id"] == first and retried["lines"][0]["error_class"] == "worker_lost"
    assert retried["lines"][0]["retry_run_id"] == line["run_id"] != first
    assert [o["asset"] for o in line["outputs"]] == ["still"]
    assert Image.open(stack.settings.media_dir / "acme" / "SCREW" / "still-still-slow.png").size == (256, 256)
    measured(
        "kill -9 of the run worker during a render",
        "run failed (worker_lost), Blender gone, no partial file, the line shows it, one retry completes it",
        True,
        0,
        detected_s=round(detected, 1),
        recovered_s=round(time.monotonic() - killed, 1),
    )


def test_a_hung_blender_is_ended_by_its_time_limit(stack):
    """Blender stops (SIGSTOP), not exits: its time limit ends it, the line and the render say
    timeout, and the lost time is reported as a recovery; a step's own failure is not retried."""
    token = client(stack)
    submitted = order(stack, token, "SCREW", "still-hang")
    run_id = submitted["lines"][0]["run_id"]
    dying = wait_for("its worker", lambda: worker(stack, run_id), 300, 0.5)
    blender = wait_for("Blender", lambda: descendants(dying, "render.py"), 300, 0.2)
    for process in blender:
        process.suspend()
    stopped = time.monotonic()
    done = wait_for(
        "the line failed", lambda: (d := document(stack, token, submitted["id"]))["state"] == "failed" and d, 600, 2
    )
    ended_after = time.monotonic() - stopped
    [line] = done["lines"]
    assert (line["error_class"], line["state"]) == ("timeout", "failed") and "did not finish in 30 s" in line["reason"]
    assert gone(blender)
    assert ("still", "failed", "timeout") in records(stack, run_id)
    assert [m for m in messages(stack, run_id) if m.startswith("[WORKER_RECOVERY]") and "timeout" in m]
    assert retry_of(stack, run_id) is None and not partials(stack, run_id)
    measured(
        "Blender hung (SIGSTOP)",
        "ended by its time limit, class timeout, [WORKER_RECOVERY] logged",
        True,
        0,
        ended_s=round(ended_after, 1),
    )


def test_run_monitoring_stops_a_run_past_its_time_limit(stack):
    """A run outlives its run time limit (its Blender hangs, its own limit is longer): run
    monitoring stops it; that is a failure, class timeout, not a cancellation, it is reported, and
    like a lost worker it runs once more (the run's failure, not a step's: Dagster's run retries)."""
    client = DagsterClient(f"http://127.0.0.1:{stack.port}/graphql")
    config = {"ops": {"still": {"config": {"output_types": ["still-slow"]}}}}
    limit = {"dagster/max_runtime": "20"}
    run_id = client.launch(ASSET_JOB, "acme|SCREW", config, limit, launch_key="past-its-time", assets=["still"])
    dying = wait_for("its worker", lambda: worker(stack, run_id), 300, 0.5)
    blender = wait_for("Blender", lambda: descendants(dying, "render.py"), 300, 0.2)
    for process in blender:
        process.suspend()
    stopped = time.monotonic()
    assert wait_for("run monitoring stopped it", lambda: ended(stack, run_id), 300, 2)
    assert any("maximum runtime of 20 seconds" in m for m in messages(stack, run_id))
    assert wait_for("Blender gone", lambda: gone(blender), 60)
    recovery = wait_for(
        "[WORKER_RECOVERY] in the run's log",
        lambda: [m for m in messages(stack, run_id) if m.startswith("[WORKER_RECOVERY]") and ": timeout: " in m],
        120,
    )
    assert recovery[0].endswith("retried automatically")
    retry = wait_for("its retry", lambda: retry_of(stack, run_id), 180)
    assert retry["tags"]["dagster/retry_number"] == "1"
    retried = wait_for("the retry ended", lambda: ended(stack, retry["runId"]), 600, 2)  # done, or stopped alike
    assert retry_of(stack, retry["runId"]) is None  # the tenant's cap: one retry
    # the render's record: the first run's timeout (settled by the sensor), then the retry's outcome
    outcome = ("still", "completed", None) if retried["status"] == "SUCCESS" else ("still", "failed", "timeout")
    assert wait_for("the retry's record", lambda: records(stack, retry["runId"]) == [outcome], 60)
    assert not partials(stack, run_id) and not partials(stack, retry["runId"])
    measured(
        "a run past its run time limit (run monitoring)",
        "stopped, recorded failed with class timeout (not cancelled), [WORKER_RECOVERY] logged, retried once",
        True,
        0,
        ended_s=round(time.monotonic() - stopped, 1),
        retry=retried["status"].lower(),
    )


def test_the_daemon_killed_while_the_sensor_has_work(stack):
    """New products and their STEP files arrive; the daemon dies while the sensor hands out their
    runs and starts again: every file version runs once, none is skipped."""
    inbox = stack.home / "uploads" / "acme"
    fresh = {"P1": ("occt-import-js", "cube-in.step"), "P2": ("cadquery", "red_cube_blue_cylinder.step")}
    for folder, name in fresh.values():
        shutil.copyfile(STEP_FIXTURES / folder / name, inbox / name)
    workbook(inbox / "more.xlsx", [(pim, name) for pim, (_, name) in fresh.items()])

    def requested() -> list[dict]:  # a run per product, or a batch over both (consecutive partitions)
        single = [r for pim in fresh for r in runs(stack, **{"dagster/partition": f"acme|{pim}"})]
        return single + runs(stack, **{"dagster/asset_partition_range_start": "acme|P1"})

    def covered(found: list[dict]) -> set[str]:
        return {
            pim
            for r in found
            for pim in fresh
            if f"acme|{pim}"
            in (r["tags"].get("dagster/partition"), r["tags"].get("dagster/asset_partition_range_start"))
            or r["tags"].get("dagster/asset_partition_range_end") == f"acme|{pim}"
        }

    wait_for("the first run the sensor requested", requested, 600, 0.5)
    stack.kill("daemon")
    killed = time.monotonic()
    stack.start("daemon")
    wait_for("the daemon back", stack.daemon_ticking, 300, 2)

    def settled() -> list[dict] | None:
        found = requested()
        return covered(found) == set(fresh) and all(r["status"] in FINISHED for r in found) and found

    done = wait_for("both products' runs finished", settled, 900, 3)
    keys = [r["tags"]["dagster/run_key"] for r in done if "dagster/parent_run_id" not in r["tags"]]
    assert len(keys) == len(set(keys)), keys  # each file version once, none skipped (covered above)
    assert all(r["status"] == "SUCCESS" for r in done if "dagster/auto_retry_run_id" not in r["tags"])
    measured(
        "daemon killed and restarted while the sensor has work",
        "every file version runs once, none skipped",
        True,
        0,
        recovered_s=round(time.monotonic() - killed, 1),
    )


def test_the_api_killed_with_orders_pending(stack):
    """Orders wait as pending while Dagster's webserver is down; the API dies while its loop
    launches them once the webserver is back: after its restart every line is launched, once
    (launch keys). (The webserver is stopped, not paused: a code server that hears nothing from
    its webserver for 45 s shuts down, and the webserver does not start another.)"""
    token = client(stack)
    stack.stop("webserver")
    try:
        pending = [order(stack, token, "SCREW", "thumbnail") for _ in range(3)]
    finally:
        stack.start("webserver")
    assert {o["lines"][0]["state"] for o in pending} == {"pending"}
    lines = [str(o["lines"][0]["id"]) for o in pending]
    wait_for(
        "the launch loop at work",
        lambda: stack.loaded_quietly() and [i for i in lines if runs(stack, **{"automat/order-line": i})],
        300,
        0.2,
    )
    stack.kill("api")
    killed = time.monotonic()
    stack.start("api")
    wait_for("the API back", stack.healthy, 300)
    launched = wait_for(
        "every line launched",
        lambda: (
            all(line["run_id"] for o in pending for line in document(stack, token, o["id"])["lines"])
            and [document(stack, token, o["id"]) for o in pending]
        ),
        300,
        2,
    )
    for line_id, o in zip(lines, launched, strict=True):
        found = runs(stack, **{"automat/order-line": line_id})
        assert [r["runId"] for r in found] == [o["lines"][0]["run_id"]]  # one run per line, the line's
    for o in pending:  # their renders are not what this test is about
        stack.api("POST", f"/orders/{o['id']}/cancel", token)
    measured(
        "the API killed with orders pending",
        "every pending line launched exactly once after the restart",
        True,
        0,
        recovered_s=round(time.monotonic() - killed, 1),
    )


def test_postgresql_restarted_during_a_catalogue_import(stack):
    """PostgreSQL (domain database and Dagster's storage alike) stops mid-import and comes back:
    the import is rolled back and runs again, once; the API says 503 meanwhile; everything recovers
    by itself."""
    inbox = stack.home / "uploads" / "acme"
    rows = [(f"BULK-{n}", None) for n in range(40_000)]
    workbook(stack.home / "bulk.xlsx", rows)
    shutil.copyfile(stack.home / "bulk.xlsx", inbox / "bulk.xlsx")
    digest = hashlib.sha256((inbox / "bulk.xlsx").read_bytes()).hexdigest()
    started = wait_for(
        "the import's step running",
        lambda: next(
            (
                r
                for r in runs(stack, **{"dagster/partition": "acme"})
                if r["status"] == "STARTED" and any('step "product_catalog"' in m for m in messages(stack, r["runId"]))
            ),
            None,
        ),
        600,
        0.5,
    )
    token = client(stack)
    time.sleep(2)
    worker_log = stack.home / "logs" / "daemon.log"  # run workers' stderr: Database.retrying's words
    waited_before = worker_log.read_text().count("the database went away")
    stack.postgres.stop()
    stopped = time.monotonic()
    unavailable = stack.api("GET", "/orders", token)
    health = stack.api("GET", "/health").json()
    time.sleep(15)
    stack.postgres.start()
    down = time.monotonic() - stopped
    assert (unavailable.status_code, unavailable.headers.get("Retry-After"), health["database"]) == (503, "5", False)
    wait_for("the stack healthy again", stack.healthy, 300, 2)  # the webserver answers 500 until then
    done = wait_for("the import finished", lambda: ended(stack, started["runId"]), 900, 3)
    recovered = time.monotonic() - stopped
    retry = retry_of(stack, started["runId"])
    final = ended(stack, retry["runId"]) if retry else done
    assert (final or {}).get("status") == "SUCCESS", (done, retry)
    with session(stack.settings.database_url) as s:
        imports = s.execute(
            select(CatalogImport.status, func.count())
            .where(CatalogImport.sha256 == digest)
            .group_by(CatalogImport.status)
        ).all()
        bulk = s.scalar(select(func.count()).select_from(Product).where(Product.pim_id.like("BULK-%")))
    assert imports == [("ok", 1)] and bulk == len(rows)  # one complete import, nothing twice
    assert worker_log.read_text().count("the database went away") > waited_before  # the outage met it
    assert stack.healthy() and stack.daemon_ticking()
    assert all(p.poll() is None for p in stack.processes.values())  # nothing had to be restarted
    measured(
        "PostgreSQL stopped and restarted during a catalogue import",
        "import rolled back and run again: exactly one complete import; 503 meanwhile; recovers by itself",
        True,
        0,
        outage_s=round(down, 1),
        recovered_s=round(recovered, 1),
        webserver_5xx_answers=stack.graphql_errors,
    )


def test_a_full_media_volume(stack, tmp_path):
    """The tenant's media volume is full: the conversion fails as disk_full, leaves nothing half
    written, the upload stays; once there is room the next run converts it."""
    reason = "mounting a small filesystem as the media volume needs root"
    if os.geteuid() != 0:
        if Settings().deployment == "ci":
            pytest.fail(f"AUTOMAT_DEPLOYMENT=ci runs every fault: {reason}")
        pytest.skip(reason)
    stack.cli("tenant", "create", "full")
    media_root = stack.settings.media_dir / "full"
    media_root.mkdir(parents=True, exist_ok=True)
    source = STEP_FIXTURES / "occt" / "screw.step"
    room = source.stat().st_size + 32 * 1024  # the STEP file fits, its GLBs do not
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={room}", "tmpfs", str(media_root)], check=True)
    try:
        inbox = stack.home / "uploads" / "full"
        shutil.copyfile(source, inbox / "screw.step")
        workbook(inbox / "products.xlsx", [("FULL-1", "screw.step")])
        [first] = wait_for("the conversion run", lambda: runs(stack, **{"dagster/partition": "full|FULL-1"}), 600)
        failed = wait_for("the conversion failed", lambda: ended(stack, first["runId"]), 600, 2)
        assert failed["status"] == "FAILURE"
        with session(stack.settings.database_url) as s:
            glb = s.execute(
                select(MediaAsset.status, MediaAsset.error_class, MediaAsset.reason).where(
                    MediaAsset.run_id == first["runId"], MediaAsset.asset == "glb_production"
                )
            ).one()
        assert glb[:2] == ("failed", "disk_full"), glb
        assert not partials(stack, first["runId"]) and not (media_root / "FULL-1" / "model.glb").exists()
        assert (inbox / "screw.step").read_bytes() == source.read_bytes()  # the upload is kept
        assert retry_of(stack, first["runId"]) is None  # a full disk is the step's failure: no blind retry
        subprocess.run(["mount", "-o", "remount,size=64m", str(media_root)], check=True)
        again = launch_media_run(stack, "full|FULL-1")
        assert wait_for("the next run", lambda: ended(stack, again), 900, 3)["status"] == "SUCCESS"
        assert trimesh.load(media_root / "FULL-1" / "production.glb", force="scene").geometry
    finally:
        subprocess.run(["umount", "-l", str(media_root)], check=False)
    measured(
        "the media volume full",
        "step fails as disk_full, partial files removed, upload kept, the next run succeeds",
        True,
        0,
    )


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def launch_media_run(stack: Stack, partition: str) -> str:
    """An operator runs the product's media chain again (the job the sensor runs)."""
    params = {
        "selector": {
            "repositoryLocationName": "automat",
            "repositoryName": "__repository__",
            "jobName": "product_media",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    launched = stack.graphql(LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]
