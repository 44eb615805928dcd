"""The production deployment on a real Docker engine: images built here (docker/build.sh, Blender as
the bpy wheel), the compose file validated, and runs launched through the routing run launcher of
docker/dagster.yaml: a conversion in the code-location container, a render in a render container,
and a render terminated with its container.

No engine: skipped with the reason, except under AUTOMAT_DEPLOYMENT=ci (``.ci/run`` starts one),
where that is a failure. Engine set-up: ``make docker-engine`` (root)."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from conftest import PASSWORD, STEP_FIXTURES, free_port, wait_for
from sqlalchemy import text
from test_ui import RUN, WORKSPACE, graphql

from automat_pipeline.api.app import create_app
from automat_pipeline.api.dagster_client import ASSET_JOB, DagsterClient
from automat_pipeline.api.security import Role, new_user
from automat_pipeline.db import repository
from automat_pipeline.db.database import migrate, session, set_role_password
from automat_pipeline.db.models import Product
from automat_pipeline.embedded import REPO, api_url, database_url, deployment, start_server
from automat_pipeline.settings import Settings

# Per checkout: concurrent sessions on one Docker engine (other worktrees) must not retag each other's images.
TAG = "test-" + hashlib.sha1(str(REPO).encode()).hexdigest()[:8]
DATA = "/var/lib/automat/data"  # the shared volume inside every container (docker/dagster.yaml)


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def engine_missing() -> str | None:
    """Why no Docker engine can be used here, or None."""
    if not shutil.which("docker"):
        return "no docker client on PATH"
    info = docker("info", "--format", "{{.ServerVersion}}")
    return None if info.returncode == 0 else f"no Docker engine answers: {info.stderr.strip()[:200]}"


def require(reason: str | None) -> None:
    """Skip for ``reason`` (a missing engine or tool), or fail under AUTOMAT_DEPLOYMENT=ci."""
    if reason and deployment() == "ci":
        pytest.fail(f"AUTOMAT_DEPLOYMENT=ci needs it: {reason}")
    if reason:
        pytest.skip(f"{reason} (make docker-engine installs and starts it, as root)")


@pytest.fixture(scope="module")
def images():
    """automat/<target>:TAG, built from this checkout (layers cached between runs)."""
    require(engine_missing())
    built = subprocess.run(
        [str(REPO / "docker" / "build.sh"), TAG],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "BLENDER_SOURCE": "pypi"},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return TAG


def test_dockerfile_passes_hadolint():
    linted = subprocess.run(
        [str(REPO / ".venv" / "bin" / "hadolint"), str(REPO / "docker" / "Dockerfile")], capture_output=True, text=True
    )
    assert linted.returncode == 0, linted.stdout


def test_compose_file_is_valid_with_the_example_settings(tmp_path):
    require(None if shutil.which("docker-compose") else "no docker-compose on PATH")
    deploy = shutil.copytree(REPO / "docker", tmp_path / "docker")
    (deploy / ".env").write_text((deploy / ".env.example").read_text())
    checked = subprocess.run(
        ["docker-compose", "config"],
        cwd=deploy,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_GID": "999"},
    )
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert set(services) == {
        "postgres",
        "migrate",
        "code-location",
        "webserver",
        "daemon",
        "api",
        "proxy",
        "render-host",
        "notify",
    }
    assert services["daemon"]["depends_on"]["render-host"] == {"condition": "service_healthy"}  # a warm host first
    automat = {n: s for n, s in services.items() if n not in ("postgres", "proxy")}
    assert all(s["environment"]["AUTOMAT_DEPLOYMENT"] == "production" for s in automat.values())
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"api", "proxy"}  # the webserver only through the proxy's login


@pytest.mark.slow
def test_images_hold_no_settings_and_refuse_to_start_without_them(images):
    for target in ("pipeline", "webserver", "daemon", "api", "render"):
        env = docker("image", "inspect", "--format", "{{json .Config.Env}}", f"automat/{target}:{images}").stdout
        assert "AUTOMAT_DEPLOYMENT=production" in env
        assert not any(name in env for name in ("DATABASE_URL", "STORAGE_URL", "JWT_SECRET")), (target, env)
    started = docker("run", "--rm", f"automat/api:{images}", "automat", "migrate")
    assert started.returncode == 2
    assert started.stderr.startswith(
        "error: missing_settings: AUTOMAT_DEPLOYMENT=production takes its settings "
        "from the environment; not set: AUTOMAT_DATABASE_URL,"
    ), started.stderr
    rendered = docker(
        "run",
        "--rm",
        f"automat/render:{images}",
        "sh",
        "-c",
        '"$AUTOMAT_BLENDER" -c "import bpy; print(bpy.app.version_string)"',
    )
    assert rendered.stdout.strip() == "5.0.1", rendered.stderr


@pytest.mark.slow
def test_render_image_runs_the_gpu_check_and_says_when_it_falls_back_to_the_cpu(images):
    """The render host's GPU benchmark (bench/gpu_bench.sh) inside the render image, at small sizes;
    here, without a GPU, the probe must say it fell back to the CPU and the renders still succeed."""
    checked = docker(
        "run",
        "--rm",
        "--env=GPU_BENCH_STILL=32 4",
        "--env=GPU_BENCH_TURNTABLE=32 2 1",
        "--env=GPU_BENCH_OUT=/tmp/gpu_bench.json",
        f"automat/render:{images}",
        "bench/gpu_bench.sh",
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[GPU_PROBE] No GPU found, falling back to CPU" in checked.stdout, checked.stdout
    assert checked.stdout.count('"device": "CPU", "backend": "CPU"') == 3, checked.stdout  # warm-up, still, turntable


@pytest.mark.slow
def test_render_image_warms_the_kernel_cache_before_its_command_and_then_turns_healthy(images):
    """The entrypoint's warm-up (probe, one GPU render, status file) runs before the container's
    command; the healthcheck turns healthy only once it is done. Here, without a GPU: a CPU host."""
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", f"automat/render:{images}").stdout)
    assert "CUDA_CACHE_MAXSIZE=4294967296" in config["Env"]  # the JIT cache sized for Cycles' kernels
    caches = dict(
        e.split("=", 1)
        for e in config["Env"]
        if e.split("=")[0] in ("OPTIX_CACHE_PATH", "CUDA_CACHE_PATH", "XDG_CACHE_HOME")
    )
    assert len(caches) == 3 and all(path.startswith("/var/lib/automat/gpu-cache/") for path in caches.values())
    assert config["Healthcheck"]["Test"] == ["CMD", "test", "-s", "/tmp/automat-render-host.json"]
    started = docker(
        "run",
        "--detach",
        "--health-interval=1s",
        "--env=AUTOMAT_RENDER_HOST=test-gpu",
        f"automat/render:{images}",
        "sh",
        "-c",
        'echo "COMMAND SEES $(cat "$AUTOMAT_RENDER_STATUS")"; exec sleep 300',
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        health = lambda: docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()  # noqa: E731
        assert health() == "starting"  # the warm-up takes seconds: not healthy yet
        wait_for("the render host to turn healthy", lambda: health() == "healthy", 180)
        logs = docker("logs", container)
        [seen] = [line for line in logs.stdout.splitlines() if line.startswith("COMMAND SEES ")]
        report = json.loads(seen.removeprefix("COMMAND SEES "))  # written before the command started
        assert (report["host"], report["warm"], report["device"]) == ("test-gpu", False, "CPU")
        assert "[GPU_PROBE] No GPU found, falling back to CPU" in logs.stderr
    finally:
        docker("rm", "--force", container)


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def instance_config(home: Path) -> dict:
    """docker/dagster.yaml, with the render route reaching this test's PostgreSQL: its socket lives
    in the server's 0700 data folder (so containers run as root, host network) and no GPU."""
    config = yaml.safe_load((REPO / "docker" / "dagster.yaml").read_text())
    [route] = config["run_launcher"]["config"]["routes"]
    docker_config = route["launcher"]["config"]
    docker_config["network"] = "host"
    docker_config["container_kwargs"] = {
        **docker_config["container_kwargs"],
        "user": "0",
        "volumes": [f"{home}:{home}", f"{home / 'data'}:{DATA}"],
    }
    del docker_config["container_kwargs"]["device_requests"]
    config["run_monitoring"]["poll_interval_seconds"] = 5
    return config


@pytest.fixture(scope="module")
def stack(images, tmp_path_factory):
    """PostgreSQL (embedded) and the Dagster webserver and daemon here; the code location in its
    container; render runs in render containers. Yields the webserver's GraphQL client."""
    home = tmp_path_factory.mktemp("deploy")
    server, admin_url = start_server(home / "postgres", cleanup_mode="delete")
    domain_url = database_url(admin_url, "automat")
    migrate(domain_url)
    settings = {
        "AUTOMAT_DATABASE_URL": domain_url,
        "AUTOMAT_DAGSTER_STORAGE_URL": database_url(admin_url, "dagster").replace("+psycopg:", "+psycopg2:"),
        "AUTOMAT_UPLOADS_DIR": f"{DATA}/uploads",
        "AUTOMAT_MEDIA_DIR": f"{DATA}/media",
    }
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(home)))
    grpc_port, web_port = free_port(), free_port()
    (home / "workspace.yaml").write_text(
        yaml.safe_dump(
            {"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": grpc_port, "location_name": "automat"}}]}
        )
    )

    code_location = f"automat-test-code-{uuid.uuid4().hex[:8]}"
    started = docker(
        "run",
        "--detach",
        "--rm",
        "--name",
        code_location,
        "--network",
        "host",
        "--user",
        "0",
        "--volume",
        f"{home}:{home}",
        "--volume",
        f"{home / 'data'}:{DATA}",
        *(f"--env={k}={v}" for k, v in settings.items()),
        f"automat/pipeline:{images}",
        "dagster",
        "api",
        "grpc",
        "--host",
        "127.0.0.1",
        "--port",
        str(grpc_port),
        "--module-name",
        "automat_pipeline.definitions",
        "--attribute",
        "defs",
    )
    assert started.returncode == 0, started.stderr
    wait_for("the code location's gRPC server", lambda: accepts(grpc_port), 120)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))},
        **settings,
        "DAGSTER_HOME": str(dagster_home),
        "AUTOMAT_RENDER_IMAGE": f"automat/render:{images}",
        "AUTOMAT_GPU_1_DOCKER_URL": "unix:///var/run/docker.sock",
    }
    bin_dir = REPO / ".venv" / "bin"
    workspace = str(home / "workspace.yaml")
    logs = [open(home / f"{name}.log", "w") for name in ("webserver", "daemon")]
    processes = [
        subprocess.Popen(
            [bin_dir / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", str(web_port)],
            env=env,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [bin_dir / "dagster-daemon", "run", "-w", workspace],
            env=env,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]
    try:
        client = DagsterClient(f"http://127.0.0.1:{web_port}/graphql")
        wait_for("the webserver", client.healthy, 120)
        location = wait_for(
            "the code location",
            lambda: graphql(web_port, WORKSPACE.replace("loadStatus", "loadStatus locationOrLoadError { __typename }"))[
                "workspaceOrError"
            ]["locationEntries"][0]["locationOrLoadError"],
            120,
        )
        assert location["__typename"] == "RepositoryLocation", location
        yield client, web_port, home, domain_url
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(30)
        docker("rm", "--force", code_location)
        del server


def add_product(domain_url: str, home: Path) -> str:
    """Tenant acme with product AS1 and its STEP upload in the shared volume; the partition key."""
    inbox = home / "data" / "uploads" / "acme"
    inbox.mkdir(parents=True)
    shutil.copyfile(STEP_FIXTURES / "occt-import-js" / "as1-oc-214.stp", inbox / "as1-oc-214.stp")
    with session(domain_url) as s, s.begin():
        tenant = repository.tenant(s, "acme")
        s.add(Product(tenant_id=tenant.id, pim_id="AS1", key="AS1", name="Assembly", step_filename="as1-oc-214.stp"))
    return "acme|AS1"


def finished(client: DagsterClient, run_id: str) -> dict:
    return wait_for(
        f"run {run_id}",
        lambda: (run := client.runs([run_id])[run_id])["status"] in ("SUCCESS", "FAILURE", "CANCELED") and run,
        600,
    )


def run_tags(port: int, run_id: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in graphql(port, RUN, id=run_id)["runOrError"]["tags"]}


def container_exists(container_id: str) -> bool:
    return bool(docker("ps", "--all", "--quiet", "--filter", f"id={container_id}").stdout.strip())


@pytest.mark.slow
def test_render_runs_launch_into_render_containers_and_terminate_with_them(stack):
    client, port, home, domain_url = stack
    partition = add_product(domain_url, home)

    convert = client.launch(
        ASSET_JOB, partition, {}, {}, "convert", ["step_file", "cad_metadata", "glb_geometry", "glb_production"]
    )
    assert finished(client, convert)["status"] == "SUCCESS", (home / "daemon.log").read_text()[-3000:]
    tags = run_tags(port, convert)
    assert "automat/render-host" not in tags and "docker/container_id" not in tags  # the code-location container

    thumbnail = client.launch(ASSET_JOB, partition, {}, {}, "thumbnail", ["thumbnail"])
    assert finished(client, thumbnail)["status"] == "SUCCESS", (home / "daemon.log").read_text()[-3000:]
    tags = run_tags(port, thumbnail)
    assert tags["automat/render-host"] == "gpu-1" and tags["dagster/image"] == f"automat/render:{TAG}"
    assert (home / "data" / "media" / "acme" / "AS1" / "thumbnail.png").stat().st_size > 1000
    wait_for("the finished run's container to go", lambda: not container_exists(tags["docker/container_id"]), 60)

    turntable = client.launch(ASSET_JOB, partition, {}, {}, "turntable", ["turntable"])  # minutes of Cycles
    container = wait_for("the turntable's container", lambda: run_tags(port, turntable).get("docker/container_id"), 120)
    wait_for("the turntable to start", lambda: client.runs([turntable])[turntable]["status"] == "STARTED", 120)
    client.terminate([turntable])
    assert finished(client, turntable)["status"] == "CANCELED"
    wait_for("the terminated run's container to go", lambda: not container_exists(container), 120)


@pytest.mark.slow
def test_the_operator_ui_admits_global_admins_only(stack, images, tmp_path):
    """The proxy image in front of the real webserver, asking a real API: no session, no UI; a client
    is refused; a global admin gets in, and is out again once deactivated."""
    _, web_port, _, domain_url = stack
    with session(domain_url) as s, s.begin():
        tenant = repository.tenant(s, "operators")
        s.add(new_user("ga@ops.example", PASSWORD, Role.global_admin, None))
        s.add(new_user("client@ops.example", PASSWORD, Role.client, tenant.id))
    set_role_password(domain_url, api_url(domain_url))
    settings = Settings(
        database_url=domain_url,
        api_database_url=api_url(domain_url),
        jwt_secret="j" * 40,
        uploads_dir=tmp_path / "u",
        media_dir=tmp_path / "m",
    )
    api_port, proxy_port = free_port(), free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, launcher=False), port=api_port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    name = f"automat-test-proxy-{uuid.uuid4().hex[:8]}"
    started = docker(
        "run",
        "--detach",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        f"--env=API_UPSTREAM=127.0.0.1:{api_port}",
        f"--env=UI_UPSTREAM=127.0.0.1:{web_port}",
        f"--env=LISTEN_PORT={proxy_port}",
        f"automat/proxy:{images}",
    )
    assert started.returncode == 0, started.stderr
    try:
        wait_for("the proxy", lambda: accepts(proxy_port), 60)
        ui = f"http://127.0.0.1:{proxy_port}"
        for path in ("/", "/graphql"):
            anonymous = httpx.get(ui + path)
            assert anonymous.status_code == 302 and anonymous.headers["location"].startswith("/automat-login?next=")
        wiped = httpx.post(
            f"{ui}/graphql", json={"query": "mutation { wipeAssets(assetPartitionRanges: []) { __typename } }"}
        )
        assert wiped.status_code == 302  # nothing reaches Dagster without a session
        form = httpx.get(f"{ui}/automat-login?next=/runs")
        assert form.status_code == 200 and 'name="password"' in form.text
        refused = httpx.post(f"{ui}/automat-login", data={"email": "client@ops.example", "password": PASSWORD})
        assert refused.status_code == 403 and "automat_operator" not in refused.headers.get("set-cookie", "")
        with httpx.Client(base_url=ui) as browser:
            admitted = browser.post(
                "/automat-login", data={"email": "ga@ops.example", "password": PASSWORD, "next": "/runs"}
            )
            assert admitted.status_code == 303 and admitted.headers["location"] == "/runs"
            page = browser.get("/runs")
            assert page.status_code == 200 and "Dagster" in page.text
            assert browser.post("/graphql", json={"query": "{ version }"}).json()["data"]["version"]
            with session(domain_url) as s, s.begin():
                s.execute(text("UPDATE users SET active = false WHERE email = 'ga@ops.example'"))
            assert browser.get("/runs").status_code == 302
    finally:
        docker("rm", "--force", name)
        server.should_exit = True
