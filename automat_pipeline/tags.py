"""Run tags: every ``automat/…`` tag a Dagster run carries, named once.

The run queue sets the tenant tags and the tenant's retry cap on every run it is handed
(``queue_tags``, ``MAX_RETRIES``); the API's launcher
sets the order and workflow tags on the runs it launches (``automat_pipeline.api.launcher``).
"""

from __future__ import annotations

from collections.abc import Mapping

from automat_pipeline.keys import SEPARATOR

PARTITION = "dagster/partition"  # Dagster's own
PARTITION_RANGE_START = "dagster/asset_partition_range_start"  # Dagster's own: a run over a range (a batch)
MAX_RETRIES = "dagster/max_retries"  # Dagster's own: a run's automatic retries (set by the run queue)
TENANT = "automat/tenant"  # every run of a tenant (set by the run queue)
RENDERS = "automat/renders"  # a tenant's runs with a Blender step (limited per tenant by the run queue)
RENDER_HOST = "automat/render-host"  # the render host a render run goes to (the run launcher routes by it)
ORDER = "automat/order"
ORDER_LINE = "automat/order-line"
WORKFLOW = "automat/workflow"
WORKFLOW_REVISION = "automat/workflow-revision"
LAUNCH_KEY = "automat/launch-key"  # one launch per key: a retried launch finds its run instead of starting another

# The steps that start Blender (template_check: automat_pipeline.templates.CHECK_STEP)
RENDER_STEPS = frozenset({"thumbnail", "still", "turntable", "blend_export", "template_check"})


def queue_tags(partition: str | None, step_keys: list[str]) -> dict[str, str]:
    """The tenant tags of a run over ``partition`` (``tenant`` or ``tenant|product``) running ``step_keys``."""
    if not partition:
        return {}
    tenant = partition.split(SEPARATOR, 1)[0]
    return {TENANT: tenant} | ({RENDERS: tenant} if RENDER_STEPS.intersection(step_keys) else {})


def run_tenant(run_tags: Mapping[str, str]) -> str | None:
    """The tenant a run works for: its partition's (a batch's partitions are one tenant's); None for a
    run over no partition."""
    partition = run_tags.get(PARTITION) or run_tags.get(PARTITION_RANGE_START)
    return partition.split(SEPARATOR, 1)[0] if partition else None
