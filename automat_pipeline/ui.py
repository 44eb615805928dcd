"""``automat ui``: the Dagster webserver and daemon on the embedded stack, stopped together.

Webserver and daemon run as separate processes (``dagster dev`` may ignore SIGTERM), each in its
own process group so that stopping reaches the code servers they spawn. Ctrl-C or SIGTERM stops
both, then the embedded PostgreSQL this process started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from automat_pipeline.embedded import REPO, prepare

GRACE_SECONDS = 10


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def serve(port: int = 3000, host: str = "127.0.0.1") -> int:
    server = prepare()  # noqa: F841 - holding the handle keeps the embedded server up
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO / "workspace.yaml")
    commands = [
        [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", host, "-p", str(port)],
        [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
    ]
    processes = [subprocess.Popen(c, cwd=REPO, start_new_session=True) for c in commands]
    print(f"Dagster UI on http://{host}:{port} (Ctrl-C stops webserver, daemon and PostgreSQL)", flush=True)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        failed = next(p for p in processes if p.poll() is not None)
        print(f"{Path(failed.args[0]).name} exited with {failed.returncode}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see automat_pipeline.cli)
        return 0
    finally:
        _stop(processes)
