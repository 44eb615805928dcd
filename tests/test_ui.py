"""``automat ui``: webserver and daemon on the embedded stack; Ctrl-C stops all of it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from openpyxl import Workbook

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
EVENTS = ("query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { "
          "... on MessageEvent { message } ... on ExecutionStepFailureEvent { error { message } } "
          "... on RunFailureEvent { error { message } } } } } }")
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"


def graphql(port: int, query: str, **variables) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                     data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def launched_run_tags(port: int) -> dict[str, str]:
    """Launch the tenant's catalogue import through the webserver; its tags once the daemon ran it."""
    deadline = time.monotonic() + 120
    while graphql(port, WORKSPACE)["workspaceOrError"]["locationEntries"][0]["loadStatus"] != "LOADED":
        assert time.monotonic() < deadline, "code location not loaded after 120 s"
        time.sleep(1)
    params = {"selector": {"repositoryLocationName": "automat_pipeline.definitions:defs",
                           "repositoryName": "__repository__", "jobName": "import_catalog"},
              "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "acme"}]}}
    launched = graphql(port, LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    while (run := graphql(port, RUN, id=run_id)["runOrError"])["status"] not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run still {run['status']} after 120 s"
        time.sleep(1)
    assert run["status"] == "SUCCESS", json.dumps(graphql(port, EVENTS, id=run_id))[-2000:]
    return {t["key"]: t["value"] for t in run["tags"]}


def test_ui_serves_runs_and_ctrl_c_stops_everything(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))}
    env["AUTOMAT_HOME"] = str(tmp_path / "home")
    automat = str(Path(sys.executable).parent / "automat")
    subprocess.run([automat, "tenant", "create", "acme"], env=env, check=True, capture_output=True)
    workbook = Workbook()
    workbook.active.append(["PIM-ID", "Name"])
    workbook.active.append(["P-1", "one"])
    workbook.save(tmp_path / "home" / "uploads" / "acme" / "products.xlsx")
    port = free_port()
    ui = subprocess.Popen([automat, "ui", "--port", str(port)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "webserver did not answer in 120 s"
                assert ui.poll() is None, "automat ui exited early"
                time.sleep(1)
        tags = launched_run_tags(port)  # the tenant run coordinator tagged it on submission
        assert tags["automat/tenant"] == "acme" and "automat/renders" not in tags
        started = psutil.Process(ui.pid).children(recursive=True)
        postgres = [p for p in psutil.process_iter(["cmdline"])
                    if p.info["cmdline"] and str(tmp_path / "home" / "postgres") in " ".join(p.info["cmdline"])]
        assert postgres, "no embedded PostgreSQL serving this AUTOMAT_HOME"
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(started + postgres, timeout=15)
        assert [" ".join(p.cmdline())[-150:] for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    finally:  # a failed assertion must not leave a webserver and daemon behind
        if ui.poll() is None:
            ui.send_signal(signal.SIGINT)
            try:
                ui.wait(timeout=60)
            except subprocess.TimeoutExpired:
                ui.kill()
