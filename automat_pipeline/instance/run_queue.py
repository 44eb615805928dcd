"""The run queue: Dagster's queued run coordinator, plus tenant tags and each tenant's render limit.

Every submitted run (sensor, UI, backfill, API) gets ``automat/tenant`` from its partition (a
batch's partitions are one tenant's),
``automat/renders`` when it runs a Blender step, and ``dagster/max_retries``: its tenant's cap on
automatic retries (``max_run_retries``; the instance retries lost workers only). Each tenant's
limit on ``automat/renders`` comes from its settings (``max_concurrent_renders``), read from the
domain database whenever the daemon dequeues, so a changed setting applies without a restart.
Neither read has the owner's rights: both act as the pipeline's role under row-level security, a
run's retry cap scoped to its tenant, the render limits through ``automat_render_limits()``
(migration 0022). The instance names this class in ``dagster.yaml``.

Where ``render_hosts`` are configured (production), a render run also gets ``automat/render-host``:
the host with the fewest unfinished render runs, so the routing run launcher
(``run_launcher.RoutingRunLauncher``) sends it there and ``tag_concurrency_limits`` on that tag cap
each host.
"""

from __future__ import annotations

import logging

from dagster import Field, IntSource, StringSource
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.run_coordinator.queued_run_coordinator import RunQueueConfig
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES, DagsterRun, RunsFilter
from sqlalchemy.exc import SQLAlchemyError

from automat_pipeline import tags

log = logging.getLogger(__name__)


class TenantRunCoordinator(QueuedRunCoordinator):
    database_url: str
    default_max_concurrent_renders: int
    render_hosts: list[str]

    @classmethod
    def config_type(cls):
        return {
            **super().config_type(),
            "database_url": Field(StringSource, description="The domain database (tenant settings)."),
            "default_max_concurrent_renders": Field(
                IntSource,
                default_value=1,
                is_required=False,
                description="A tenant's render runs at once, unless its settings say otherwise.",
            ),
            "render_hosts": Field(
                [str],
                default_value=[],
                is_required=False,
                description="Render hosts by name (a route of the run launcher each); "
                "none: render runs launch like any other.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        coordinator = super().from_config_value(inst_data, config_value)
        coordinator.database_url = config_value["database_url"]
        coordinator.default_max_concurrent_renders = config_value["default_max_concurrent_renders"]
        coordinator.render_hosts = config_value["render_hosts"]
        return coordinator

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        plan = self._instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        steps = plan.step_keys_to_execute or [step.key for step in plan.steps]
        partition = run.tags.get(tags.PARTITION) or run.tags.get(tags.PARTITION_RANGE_START)  # a batch: its first
        run_tags = tags.queue_tags(partition, steps)
        if tags.RENDERS in run_tags and self.render_hosts and tags.RENDER_HOST not in run.tags:
            run_tags[tags.RENDER_HOST] = self.least_busy_render_host()
        if tags.TENANT in run_tags and (retries := self._max_run_retries(run_tags[tags.TENANT])) is not None:
            run_tags[tags.MAX_RETRIES] = str(retries)
        if run_tags:
            self._instance.add_run_tags(run.run_id, run_tags)
        return super().submit_run(context)

    def least_busy_render_host(self) -> str:
        """The render host with the fewest queued or running render runs (the first of equals)."""

        def load(host: str) -> int:
            return self._instance.get_runs_count(
                RunsFilter(tags={tags.RENDER_HOST: host}, statuses=list(NOT_FINISHED_STATUSES))
            )

        return min(self.render_hosts, key=load)

    def _max_run_retries(self, tenant: str) -> int | None:
        """The tenant's cap on automatic retries (its ``max_run_retries``); None: the instance's
        ``run_retries.max_retries`` applies (the tenant is unknown, or the database does not answer)."""
        from automat_pipeline.db import repository
        from automat_pipeline.db.database import scope, session

        try:
            with session(self.database_url) as s, s.begin():
                scope(s, tenant)  # the pipeline's role: the run's tenant's rows only
                return repository.max_run_retries(s, tenant)
        except SQLAlchemyError as error:
            log.warning("tenant %s: retry cap unavailable (%s); the instance's applies", tenant, error)
            return None

    def get_run_queue_config(self) -> RunQueueConfig:
        config = super().get_run_queue_config()
        return config._replace(tag_concurrency_limits=[*config.tag_concurrency_limits, *self._render_limits()])

    def _render_limits(self) -> list[dict]:
        from automat_pipeline.db import repository
        from automat_pipeline.db.database import scope, session

        default = self.default_max_concurrent_renders
        try:
            with session(self.database_url) as s, s.begin():
                scope(s, None)  # the pipeline's role, no tenant's rows: the limits come through a function
                limits = repository.render_limits(s, default)
        except SQLAlchemyError as error:  # the queue goes on with the default for every tenant
            log.warning("tenant render limits unavailable (%s); using %d per tenant", error, default)
            return [{"key": tags.RENDERS, "value": {"applyLimitPerUniqueValue": True}, "limit": default}]
        return [{"key": tags.RENDERS, "value": slug, "limit": limit} for slug, limit in sorted(limits.items())]
