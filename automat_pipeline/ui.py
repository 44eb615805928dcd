"""``automat ui``: the Dagster webserver and daemon, the API and the deliverer on the embedded
stack, stopped together.

Webserver and daemon run as separate processes (``dagster dev`` may ignore SIGTERM), each in its
own session. Ctrl-C or SIGTERM stops both and everything they started (code servers, runs in
flight), then the embedded PostgreSQL this process started.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import psutil

from automat_pipeline.embedded import load_settings, prepare
from automat_pipeline.settings import REPO

GRACE_SECONDS = 10


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to webserver, daemon and every process under them (code servers, run workers and
    the forkservers those start, whatever their process group), then SIGKILL to what is left."""
    family = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            family += [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=GRACE_SECONDS)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    for p in processes:
        p.wait()


def serve(port: int = 3000, host: str = "127.0.0.1", api_port: int = 8000) -> int:
    # The embedded PostgreSQL it may start stops when this process exits; the children inherit the settings.
    prepare(load_settings().model_copy(update={"dagster_graphql_url": f"http://{host}:{port}/graphql"}))
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO / "workspace.yaml")
    commands = [
        [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", host, "-p", str(port)],
        [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
        [str(bin_dir / "automat"), "api", "--host", host, "--port", str(api_port)],
        [str(bin_dir / "automat"), "notify"],
    ]
    processes = [subprocess.Popen(c, cwd=REPO, start_new_session=True) for c in commands]
    print(
        f"Dagster UI on http://{host}:{port}, orders API on http://{host}:{api_port}/docs "
        "(Ctrl-C stops them and PostgreSQL)",
        flush=True,
    )
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
