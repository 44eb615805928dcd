"""``automat ui``: webserver and daemon on the embedded stack; Ctrl-C stops all of it."""

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

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_and_ctrl_c_stops_everything(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))}
    env["AUTOMAT_HOME"] = str(tmp_path / "home")
    port = free_port()
    ui = subprocess.Popen([str(Path(sys.executable).parent / "automat"), "ui", "--port", str(port)], env=env,
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
        started = psutil.Process(ui.pid).children(recursive=True)
        postgres = [p for p in psutil.process_iter(["cmdline"])
                    if p.info["cmdline"] and str(tmp_path / "home" / "postgres") in " ".join(p.info["cmdline"])]
        assert postgres, "no embedded PostgreSQL serving this AUTOMAT_HOME"
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(started + postgres, timeout=15)
        assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if ui.poll() is None:
            ui.kill()
