"""Run launchers: one per instance, so one that hands each run to the launcher its tags name.

A Dagster instance has exactly one run launcher and Dagster does not route between launchers.
``RoutingRunLauncher`` holds a default launcher and routes ``{tag: {key, value}, launcher}``; a
run goes to the first route whose tag it carries (``automat/render-host``, set by
``run_queue.TenantRunCoordinator``), else to the default. Terminating, health checks and resuming
go to the launcher that launched the run, found again from its tags.

``DockerHostRunLauncher`` is dagster-docker's ``DockerRunLauncher`` on a named Docker engine
(``docker_url``) rather than the process's ``DOCKER_HOST``, so each render host is one route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from dagster import Array, Field, Permissive, Shape, StringSource
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, ResumeRunContext, RunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster_docker import DockerRunLauncher
from dagster_docker.utils import DOCKER_CONFIG_SCHEMA

import docker

LAUNCHER = Shape({"module": Field(str), "class": Field(str), "config": Field(Permissive(), default_value={})})


def _rehydrate(spec: Mapping[str, Any]) -> RunLauncher:
    return ConfigurableClassData(spec["module"], spec["class"], yaml.safe_dump(dict(spec["config"]))).rehydrate(
        RunLauncher
    )


class RoutingRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(
        self, inst_data: ConfigurableClassData | None, default: Mapping[str, Any], routes: list[Mapping[str, Any]]
    ):
        self._inst_data = inst_data
        self.default = _rehydrate(default)
        self.routes = [((r["tag"]["key"], r["tag"]["value"]), _rehydrate(r["launcher"])) for r in routes]
        super().__init__()

    @property
    def inst_data(self):
        return self._inst_data

    @classmethod
    def config_type(cls):
        return {
            "default": Field(LAUNCHER, description="The launcher of every run no route claims."),
            "routes": Field(
                Array(Shape({"tag": Shape({"key": Field(str), "value": Field(str)}), "launcher": LAUNCHER})),
                default_value=[],
                description="A run carrying the tag goes to the launcher; first match wins.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data, config_value["default"], config_value["routes"])

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        for launcher in self._launchers():
            launcher.register_instance(instance)

    def _launchers(self) -> list[RunLauncher]:
        return [self.default, *(launcher for _, launcher in self.routes)]

    def launcher_for(self, run: DagsterRun) -> RunLauncher:
        """The launcher of ``run``: the first route whose tag it carries, else the default."""
        return next((launcher for (key, value), launcher in self.routes if run.tags.get(key) == value), self.default)

    def launch_run(self, context: LaunchRunContext) -> None:
        self.launcher_for(context.dagster_run).launch_run(context)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        return bool(run) and self.launcher_for(run).terminate(run_id)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return any(launcher.supports_check_run_worker_health for launcher in self._launchers())

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        launcher = self.launcher_for(run)
        if not launcher.supports_check_run_worker_health:
            # What the run monitor assumes of a launcher that cannot check: it times such runs out instead.
            return CheckRunHealthResult(WorkerStatus.RUNNING, msg=f"{type(launcher).__name__} does not check workers")
        return launcher.check_run_worker_health(run)

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True) -> str | None:
        return self.launcher_for(run).get_run_worker_debug_info(run, include_container_logs)

    @property
    def supports_resume_run(self) -> bool:
        return any(launcher.supports_resume_run for launcher in self._launchers())

    def resume_run(self, context: ResumeRunContext) -> None:
        launcher = self.launcher_for(context.dagster_run)
        if not launcher.supports_resume_run:
            raise NotImplementedError(f"{type(launcher).__name__} cannot resume run {context.dagster_run.run_id}")
        launcher.resume_run(context)

    def dispose(self) -> None:
        for launcher in self._launchers():
            launcher.dispose()

    def join(self, timeout: int = 30) -> None:
        for launcher in self._launchers():
            launcher.join(timeout)


class DockerHostRunLauncher(DockerRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None, docker_url: str | None = None, **config):
        self.docker_url = docker_url
        super().__init__(inst_data=inst_data, **config)

    @classmethod
    def config_type(cls):
        return {
            **DOCKER_CONFIG_SCHEMA,
            "docker_url": Field(
                StringSource,
                is_required=False,
                description="The render host's Docker engine, e.g. tcp://gpu-1:2376 or "
                "unix:///var/run/docker.sock; DOCKER_HOST when left out.",
            ),
        }

    def _get_client(self, container_context):
        if not self.docker_url:
            return super()._get_client(container_context)
        client = docker.DockerClient(base_url=self.docker_url)
        if container_context.registry:
            registry = container_context.registry
            client.login(registry=registry["url"], username=registry["username"], password=registry["password"])
        return client
