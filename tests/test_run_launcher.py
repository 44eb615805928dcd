"""The routing run launcher hands each run to the launcher its tags name, and everything about that
run (terminate, health, resume) to the same one. Launching into a real Docker engine: test_docker.py."""

from typing import ClassVar

import pytest
from dagster import AssetKey, instance_for_test
from dagster._core.launcher import LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass

from automat_pipeline.definitions import defs
from automat_pipeline.instance.run_launcher import DockerHostRunLauncher, RoutingRunLauncher


class Recorder(RunLauncher, ConfigurableClass):
    """A launcher that records what it was asked to do, under its configured name."""

    calls: ClassVar[list[tuple[str, str, str]]] = []

    def __init__(self, inst_data=None, name=""):
        self._inst_data, self.name = inst_data, name
        super().__init__()

    @property
    def inst_data(self):
        return self._inst_data

    @classmethod
    def config_type(cls):
        return {"name": str}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data, **config_value)

    def launch_run(self, context):
        self.calls.append((self.name, "launch", context.dagster_run.run_id))

    def terminate(self, run_id):
        self.calls.append((self.name, "terminate", run_id))
        return True


def recorder(name: str) -> dict:
    return {"module": __name__, "class": "Recorder", "config": {"name": name}}


ROUTING = {
    "module": "automat_pipeline.instance.run_launcher",
    "class": "RoutingRunLauncher",
    "config": {
        "default": recorder("local"),
        "routes": [
            {"tag": {"key": "automat/render-host", "value": "gpu-1"}, "launcher": recorder("gpu-1")},
            {"tag": {"key": "automat/render-host", "value": "gpu-2"}, "launcher": recorder("gpu-2")},
        ],
    },
}


@pytest.fixture
def instance(env):
    Recorder.calls.clear()
    with instance_for_test(overrides={"run_launcher": ROUTING}) as instance:
        yield instance


def run(instance, **tags):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={AssetKey("thumbnail")})
    return instance.create_run_for_job(job, tags=tags)


def test_runs_go_to_the_launcher_their_tag_names_and_stay_there(instance):
    launcher = instance.run_launcher
    assert isinstance(launcher, RoutingRunLauncher)
    gpu, local, other = (
        run(instance, **{"automat/render-host": "gpu-2"}),
        run(instance),
        run(instance, **{"automat/render-host": "gpu-9"}),
    )
    for r in (gpu, local, other):
        launcher.launch_run(LaunchRunContext(dagster_run=r, workspace=None))
    assert launcher.terminate(gpu.run_id)
    assert Recorder.calls == [
        ("gpu-2", "launch", gpu.run_id),
        ("local", "launch", local.run_id),
        ("local", "launch", other.run_id),
        ("gpu-2", "terminate", gpu.run_id),
    ]
    assert not launcher.terminate("no-such-run")


def test_a_launcher_that_cannot_check_workers_leaves_its_runs_to_the_run_timeout(instance):
    health = instance.run_launcher.check_run_worker_health(run(instance))
    assert health.status == WorkerStatus.RUNNING and "Recorder does not check workers" in health.msg
    assert not instance.run_launcher.supports_resume_run


def test_a_render_host_route_is_a_docker_launcher_on_that_host():
    docker = {
        "module": "automat_pipeline.instance.run_launcher",
        "class": "DockerHostRunLauncher",
        "config": {
            "image": "automat/render:1",
            "docker_url": "tcp://gpu-1:2376",
            "container_kwargs": {"device_requests": [{"count": -1, "capabilities": [["gpu"]]}]},
        },
    }
    config = {
        **ROUTING["config"],
        "routes": [{"tag": {"key": "automat/render-host", "value": "gpu-1"}, "launcher": docker}],
    }
    with instance_for_test(overrides={"run_launcher": {**ROUTING, "config": config}}) as instance:
        [(_, host)] = instance.run_launcher.routes
        assert isinstance(host, DockerHostRunLauncher) and host.docker_url == "tcp://gpu-1:2376"
        assert host.supports_check_run_worker_health and instance.run_launcher.supports_resume_run
