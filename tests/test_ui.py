"""``automat ui``: webserver, daemon and orders API on the embedded stack, an order rendered through
Dagster end to end; Ctrl-C stops all of it."""

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import STEP_FIXTURES, free_port, fresh_home_env, wait_for
from openpyxl import Workbook
from prometheus_client.parser import text_string_to_metric_families

from automat_pipeline.cad import read_glb
from automat_pipeline.embedded import REPO

pytestmark = pytest.mark.slow


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
EVENTS = (
    "query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { "
    "... on MessageEvent { message } ... on ExecutionStepFailureEvent { error { message } } "
    "... on RunFailureEvent { error { message } } } } } }"
)
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"


def graphql(port: int, query: str, **variables) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        method="POST",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def launched_run_tags(port: int) -> dict[str, str]:
    """Launch the tenant's catalogue import through the webserver; its tags once the daemon ran it."""
    deadline = time.monotonic() + 120
    while graphql(port, WORKSPACE)["workspaceOrError"]["locationEntries"][0]["loadStatus"] != "LOADED":
        assert time.monotonic() < deadline, "code location not loaded after 120 s"
        time.sleep(1)
    params = {
        "selector": {
            "repositoryLocationName": "automat",
            "repositoryName": "__repository__",
            "jobName": "import_catalog",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "acme"}]},
    }
    launched = graphql(port, LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    while (run := graphql(port, RUN, id=run_id)["runOrError"])["status"] not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run still {run['status']} after 120 s"
        time.sleep(1)
    assert run["status"] == "SUCCESS", json.dumps(graphql(port, EVENTS, id=run_id))[-2000:]
    return {t["key"]: t["value"] for t in run["tags"]}


def command_line(process: psutil.Process) -> str:
    """Its command line; "" for a process that exited meanwhile or awaits its parent's reaping."""
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:  # ZombieProcess included
        return ""


def http(method: str, url: str, body: dict | None = None, token: str | None = None, strict: bool = False):
    """The answer's JSON; None when there is none (not answering, or an error status unless ``strict``,
    which raises with the error's body)."""
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:  # 30 s: while Dagster is frozen the API waits out its own 10 s timeout
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        if strict:
            raise AssertionError(f"{method} {url}: {error.code} {error.read()[:500]!r}") from error
        return None
    except OSError:
        return None


def scraped(url: str) -> dict[tuple, float]:
    """The samples of a Prometheus text page, by name and sorted labels."""
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def order_renders_through_dagster(api: str) -> dict:
    """A client waits for the uploaded product's thumbnail, orders a fresh one, and follows the order."""
    token = http("POST", f"{api}/auth/login", {"email": "client@acme.example", "password": PASSWORD})["access_token"]

    def converted():
        products = http("GET", f"{api}/products", token=token)
        detail = (
            products and products["items"] and http("GET", f"{api}/products/{products['items'][0]['id']}", token=token)
        )
        return detail if detail and any(m["asset"] == "thumbnail" for m in detail["media"]) else None

    product = wait_for("the sensor's import, conversion and thumbnail", converted)
    order = http("POST", f"{api}/orders", token=token)
    http(
        "POST",
        f"{api}/orders/{order['id']}/lines",
        {"product_id": product["id"], "output_type": "thumbnail"},
        token=token,
    )
    submitted = http("POST", f"{api}/orders/{order['id']}/submit", token=token)
    assert submitted and submitted["lines"][0]["run_id"], submitted
    return wait_for(
        "the order's run",
        lambda: (
            (o := http("GET", f"{api}/orders/{order['id']}", token=token))
            and o["state"] in ("completed", "failed", "cancelled")
            and o
        ),
    )


def order_while_dagster_is_down(api: str, webserver: psutil.Process) -> dict:
    """The webserver stops answering (frozen); an order (running the saved workflow) submitted
    meanwhile waits as pending and is launched by the API once the webserver answers again."""
    token = http("POST", f"{api}/auth/login", {"email": "client@acme.example", "password": PASSWORD})["access_token"]
    product = http("GET", f"{api}/products", token=token)["items"][0]
    order = http("POST", f"{api}/orders", {"workflow": "preview"}, token=token)
    http(
        "POST",
        f"{api}/orders/{order['id']}/lines",
        {"product_id": product["id"], "output_type": "thumbnail"},
        token=token,
    )
    webserver.suspend()
    try:
        submitted = http("POST", f"{api}/orders/{order['id']}/submit", token=token)
        assert submitted["state"] == "pending" and submitted["lines"][0]["launch_error"], submitted
        assert http("GET", f"{api}/health") == {"database": True, "dagster": False}
    finally:
        webserver.resume()
    return wait_for(
        "the pending order's run",
        lambda: (
            (o := http("GET", f"{api}/orders/{order['id']}", token=token))
            and o["state"] in ("completed", "failed", "cancelled")
            and o
        ),
        show=lambda: http("GET", f"{api}/orders/{order['id']}", token=token),
    )


STUDIO = """
import bpy, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.context.scene.world = bpy.data.worlds.new("Studio")
bpy.context.scene.collection.objects.link(bpy.data.objects.new("Key", bpy.data.lights.new("Key", "SUN")))
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])
"""


def template_checked_once_dagster_is_back(api: str, webserver: psutil.Process, folder: Path) -> dict:
    """A tenant admin uploads a template while the webserver does not answer: it is kept, checking;
    once the webserver answers the API's loop launches its check, which Blender runs through Dagster."""
    studio = folder / "studio.blend"
    subprocess.run([str(REPO / ".venv-render" / "bin" / "python"), "-c", STUDIO, str(studio)], check=True)
    token = http("POST", f"{api}/auth/login", {"email": "admin@acme.example", "password": PASSWORD})["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    webserver.suspend()
    try:
        uploaded = httpx.post(
            f"{api}/templates", headers=headers, files={"file": ("studio.blend", studio.read_bytes())}, timeout=30
        )
    finally:
        webserver.resume()
    assert uploaded.status_code == 202 and uploaded.json()["launch_error"], uploaded.text
    return wait_for(
        "the template's check",
        lambda: (t := http("GET", f"{api}/templates", token=token)) and t[0]["status"] != "checking" and t[0],
    )


PASSWORD = "a client's long password"
STEPS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status stepStats { stepKey } } } }"


def run_steps(port: int, run_id: str) -> list[str]:
    return sorted(s["stepKey"] for s in graphql(port, STEPS, id=run_id)["runOrError"]["stepStats"])


def saved_workflow_runs_only_its_steps(api: str, port: int) -> list[str]:
    """A tenant admin saves a two-step workflow and runs it for the product; the run's steps."""
    token = http("POST", f"{api}/auth/login", {"email": "admin@acme.example", "password": PASSWORD})["access_token"]
    workflow = {"version": 1, "nodes": [{"id": "t", "step": "thumbnail"}, {"id": "b", "step": "blend_export"}]}
    assert http("PUT", f"{api}/workflows/preview", workflow, token=token)["revision"] == 1
    product = http("GET", f"{api}/products", token=token)["items"][0]
    planned = http("POST", f"{api}/workflows/preview/plan", {"product_id": product["id"]}, token=token)
    assert planned == {"selection": ["blend_export", "thumbnail"], "run_config": {}}  # glb_production is there
    [run_id] = http("POST", f"{api}/workflows/preview/runs", {"product_ids": [product["id"]]}, token=token)[
        "runs"
    ].values()
    run = wait_for(
        "the workflow's run",
        lambda: (
            (r := graphql(port, STEPS, id=run_id)["runOrError"])
            and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
            and r
        ),
    )
    assert run["status"] == "SUCCESS", run
    return run_steps(port, run_id)


BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status runs(limit: 10) { status } } } }"""
DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


def material_change_remade(api: str, port: int, media: Path) -> tuple[dict, dict]:
    """The screw's one part (fallback magenta) gets the tenant's own zinc by an alias; the change
    names the product, and one backfill re-makes its GLBs and what was rendered from them."""
    token = http("POST", f"{api}/auth/login", {"email": "admin@acme.example", "password": PASSWORD})["access_token"]
    zinc = {"name": "ACME_Zinc", "base_color": [0.7, 0.7, 0.72], "metallic": 1.0, "roughness": 0.4}
    assert http("PUT", f"{api}/materials/ACME_Zinc", zinc, token=token, strict=True)["products"] == 0
    aliases = [{"pattern": "screw", "material": "ACME_Zinc"}]
    change = http("PUT", f"{api}/material-aliases", aliases, token=token, strict=True)
    remake = http("POST", f"{api}/materials/remake", {"product_ids": change["product_ids"]}, token=token, strict=True)
    backfill = wait_for(
        "the remake backfill",
        lambda: (
            (b := graphql(port, BACKFILL, id=remake["backfill_id"])["partitionBackfillOrError"])
            and b["status"] in DONE
            and b
        ),
    )
    document, _ = read_glb(media / "acme" / "SCREW-1" / "production.glb")
    return change | {"remake": remake, "backfill": backfill}, document


def screw_catalogue(inbox: Path) -> None:
    """A one-product catalogue naming the screw, and the screw's STEP file, dropped into an inbox."""
    workbook = Workbook()
    workbook.active.append(["PIM-ID", "Name", "CAD-Datei"])
    workbook.active.append(["SCREW-1", "Screw", "screw.step"])
    workbook.save(inbox / "products.xlsx")
    shutil.copyfile(STEP_FIXTURES / "occt" / "screw.step", inbox / "screw.step")


def start_ui(automat: str, env: dict) -> tuple[subprocess.Popen, int, str]:
    """``automat ui`` on free loopback ports: the process, the webserver's port and the API's URL."""
    port, api_port = free_port(), free_port()
    ui = subprocess.Popen(
        [automat, "ui", "--port", str(port), "--api-port", str(api_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return ui, port, f"http://127.0.0.1:{api_port}"


def test_ui_serves_runs_and_orders_and_ctrl_c_stops_everything(tmp_path: Path):
    env = fresh_home_env(tmp_path / "home")
    automat = str(Path(sys.executable).parent / "automat")
    created = subprocess.run([automat, "tenant", "create", "acme"], env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    for role, email in (("client", "client@acme.example"), ("tenant_admin", "admin@acme.example")):
        created = subprocess.run(
            [automat, "user", "create", "--tenant", "acme", "--role", role, "--email", email],
            env=env | {"AUTOMAT_USER_PASSWORD": PASSWORD},
            capture_output=True,
            text=True,
        )
        assert created.returncode == 0, created.stderr
    screw_catalogue(tmp_path / "home" / "uploads" / "acme")
    ui, port, api = start_ui(automat, env)
    api_port = int(api.rsplit(":", 1)[1])
    try:
        health = wait_for(
            "webserver and API",
            lambda: ui.poll() is None and (h := http("GET", f"{api}/health")) and h["dagster"] and h,
            seconds=120,
        )
        assert health == {"database": True, "dagster": True}
        listening = {
            c.laddr
            for p in psutil.Process(ui.pid).children(recursive=True)
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert {port, api_port} <= {a.port for a in listening} and {a.ip for a in listening} == {"127.0.0.1"}
        tags = launched_run_tags(port)  # the tenant run coordinator tagged it on submission
        assert tags["automat/tenant"] == "acme" and "automat/renders" not in tags
        order = order_renders_through_dagster(api)
        [line] = order["lines"]
        assert (order["state"], line["state"]) == ("completed", "completed"), order
        assert line["steps"] == [] and line["seconds"] > 0  # a finished run's steps are in the Dagster UI
        assert run_steps(port, line["run_id"]) == ["thumbnail"]
        [output] = line["outputs"]
        assert output["file"] and output["details"]["engine"] == "workbench" and output["details"]["output_bytes"] > 0
        metrics = scraped(f"{api}/metrics")  # loopback: no token needed
        assert metrics["automat_dagster_up", ()] == 1
        assert metrics["automat_runs", (("state", "success"), ("tenant", "acme"))] >= 3  # import, media, order
        assert metrics["automat_conversion_seconds_count", (("step", "cad_conversion"), ("tenant", "acme"))] == 1
        assert metrics["automat_render_seconds_count", (("step", "thumbnail"), ("tenant", "acme"))] == 2
        assert metrics["automat_sensor_tick_seconds_count", (("step", "upload_sensor"), ("tenant", ""))] >= 2
        [webserver] = [
            p for p in psutil.Process(ui.pid).children(recursive=True) if "dagster-webserver" in command_line(p)
        ]
        assert saved_workflow_runs_only_its_steps(api, port) == ["blend_export", "thumbnail"]
        later = order_while_dagster_is_down(api, webserver)  # it names the saved workflow
        assert later["state"] == "completed" and later["lines"][0]["launch_error"] is None, later
        assert run_steps(port, later["lines"][0]["run_id"]) == ["blend_export", "thumbnail"]
        tags = {t["key"]: t["value"] for t in graphql(port, RUN, id=later["lines"][0]["run_id"])["runOrError"]["tags"]}
        assert (tags["automat/workflow"], tags["automat/workflow-revision"]) == ("preview", "1")  # as documented
        assert tags["automat/order"] == str(later["id"]) and tags["automat/order-line"] == str(later["lines"][0]["id"])
        change, production = material_change_remade(api, port, tmp_path / "home" / "media")
        assert change["examples"][0]["parts"] == {
            "screw": {"before": "SCHAEFFLER_059999_FailedMaterial", "after": "ACME_Zinc"}
        }
        assert change["remake"]["steps"] == [
            "blend_export",
            "cad_metadata",
            "glb_geometry",
            "glb_production",
            "thumbnail",
        ]
        assert change["backfill"]["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), change["backfill"]
        assert {r["status"] for r in change["backfill"]["runs"]} == {"SUCCESS"}
        assert [m["name"] for m in production["materials"]] == ["ACME_Zinc"]
        template = template_checked_once_dagster_is_back(api, webserver, tmp_path)
        assert (template["status"], template["report"]["lights"], template["launch_error"]) == ("ok", ["Key"], None)
        tags = {t["key"]: t["value"] for t in graphql(port, RUN, id=template["run_id"])["runOrError"]["tags"]}
        assert (tags["dagster/partition"], tags["automat/renders"]) == ("acme", "acme")  # a render step
        started = psutil.Process(ui.pid).children(recursive=True)
        postgres = [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and str(tmp_path / "home" / "postgres") in " ".join(p.info["cmdline"])
        ]
        assert postgres, "no embedded PostgreSQL serving this AUTOMAT_HOME"
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(started + postgres, timeout=15)
        assert [command_line(p)[-150:] for p in alive if command_line(p)] == []
    finally:  # a failed assertion must not leave a webserver, daemon and API behind
        if ui.poll() is None:
            ui.send_signal(signal.SIGINT)
            try:
                ui.wait(timeout=60)
            except subprocess.TimeoutExpired:
                ui.kill()
