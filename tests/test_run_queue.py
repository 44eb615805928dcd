"""The run queue tags every run with its tenant and reads each tenant's render limit live.

That a run submitted through the webserver gets its tags: tests/test_ui.py."""

import pytest
from dagster import AssetKey, instance_for_test
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from sqlalchemy import text, update
from sqlalchemy.exc import ProgrammingError

from automat_pipeline import templates
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import Tenant
from automat_pipeline.definitions import defs
from automat_pipeline.tags import RENDER_STEPS, queue_tags


def test_render_steps_are_the_render_group():
    graph = defs.resolve_asset_graph()
    render_group = {node.key.to_user_string() for node in graph.asset_nodes if node.group_name == "render"}
    assert RENDER_STEPS == render_group | {templates.CHECK_STEP}  # the template check starts Blender too (an op)


def test_run_tags_name_the_tenant_and_mark_renders():
    assert queue_tags("acme|AS1", ["step_file", "cad_conversion", "thumbnail"]) == {
        "automat/tenant": "acme",
        "automat/renders": "acme",
    }
    assert queue_tags("acme", ["product_catalog"]) == {"automat/tenant": "acme"}
    assert queue_tags(None, ["thumbnail"]) == {}


def coordinator(env, **config) -> dict:
    return {
        "run_coordinator": {
            "module": "automat_pipeline.instance.run_queue",
            "class": "TenantRunCoordinator",
            "config": {
                "database_url": env["AUTOMAT_DATABASE_URL"],
                "default_max_concurrent_renders": 1,
                "max_concurrent_runs": 4,
                **config,
            },
        }
    }


@pytest.fixture
def instance(env):
    with instance_for_test(overrides=coordinator(env)) as instance:
        yield instance


@pytest.fixture
def instance_with_hosts(env):
    with instance_for_test(overrides=coordinator(env, render_hosts=["gpu-1", "gpu-2"])) as instance:
        yield instance


def render_limits(instance) -> dict:
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    return {limit["value"]: limit["limit"] for limit in limits if limit["key"] == "automat/renders"}


def test_render_limits_follow_tenant_settings_without_a_restart(env, instance):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        repository.tenant(s, "acme").settings = {"max_concurrent_renders": 3}
        repository.tenant(s, "beta")
        repository.tenant(s, "gamma").settings = {"max_concurrent_renders": "lots"}  # invalid: the default
    assert render_limits(instance) == {"acme": 3, "beta": 1, "gamma": 1}
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.execute(update(Tenant).where(Tenant.slug == "acme").values(settings={"max_concurrent_renders": 5}))
    assert render_limits(instance)["acme"] == 5


LOCATION = InProcessCodeLocationOrigin(
    LoadableTargetOrigin(module_name="automat_pipeline.definitions", attribute="defs"), location_name="automat"
)


def submit(instance, partition: str, asset: str, tags: dict | None = None):
    """Create and submit a run of ``asset`` for ``partition`` (or ``tags``: a range of partitions); no
    daemon runs here: it stays queued."""
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={AssetKey(asset)})
    with LOCATION.create_location(instance) as location:
        remote = location.get_repository("__repository__").get_full_job("__ASSET_JOB")
    run = instance.create_run_for_job(
        job,
        tags=tags or {"dagster/partition": partition},
        remote_job_origin=remote.get_remote_origin(),
        job_code_origin=remote.get_python_origin(),
    )
    return instance.submit_run(run.run_id, workspace=None)


def test_render_runs_go_to_the_least_busy_render_host(env, instance_with_hosts):
    first = submit(instance_with_hosts, "acme|AS1", "thumbnail")
    second = submit(instance_with_hosts, "beta|AS2", "thumbnail")
    third = submit(instance_with_hosts, "acme|AS3", "thumbnail")
    catalog = submit(instance_with_hosts, "acme", "product_catalog")
    hosts = [
        instance_with_hosts.get_run_by_id(r.run_id).tags.get("automat/render-host")
        for r in (first, second, third, catalog)
    ]
    assert hosts == ["gpu-1", "gpu-2", "gpu-1", None]


def test_a_batch_run_is_its_first_products_tenants(env, instance):
    instance.add_dynamic_partitions("products", ["acme|A", "acme|B"])
    batch = {"dagster/asset_partition_range_start": "acme|A", "dagster/asset_partition_range_end": "acme|B"}
    run = instance.get_run_by_id(submit(instance, None, "thumbnail", batch).run_id)
    assert (run.tags["automat/tenant"], run.tags["automat/renders"]) == ("acme", "acme")


def test_each_run_carries_its_tenants_cap_on_automatic_retries(env, instance):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        repository.tenant(s, "acme").settings = {"max_run_retries": 0}
        repository.tenant(s, "beta")
        repository.tenant(s, "gamma").settings = {"max_run_retries": "many"}  # invalid: the instance's cap
    runs = [submit(instance, partition, "thumbnail") for partition in ("acme|AS1", "beta|B1", "gamma|G1", "nobody|X")]
    caps = [instance.get_run_by_id(r.run_id).tags.get("dagster/max_retries") for r in runs]
    assert caps == ["0", "1", None, None]  # None: run_retries.max_retries of dagster.yaml applies


def test_the_run_queue_reads_as_the_pipelines_role_not_the_owner(env, instance, monkeypatch):
    """Neither of the run queue's reads has the owner's rights (migration 0022): the render limits come
    through a function into a transaction that sees no tenant's rows and may change no tenant; a run's
    retry cap is read seeing its own tenant's rows only."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        repository.tenant(s, "acme").settings = {"max_run_retries": 2, "max_concurrent_renders": 2}
        repository.tenant(s, "beta")
    seen = {}

    def careless(name, read):
        def unfiltered(s, *args):
            seen[name] = (s.scalar(text("SELECT current_user")), sorted(s.scalars(text("SELECT slug FROM tenants"))))
            with pytest.raises(ProgrammingError, match="permission denied for table tenants"), s.begin_nested():
                s.execute(text("UPDATE tenants SET settings = '{}'"))
            return read(s, *args)

        return unfiltered

    monkeypatch.setattr(repository, "render_limits", careless("limits", repository.render_limits))
    monkeypatch.setattr(repository, "max_run_retries", careless("retries", repository.max_run_retries))
    assert render_limits(instance) == {"acme": 2, "beta": 1}
    run = submit(instance, "acme|AS1", "thumbnail")
    assert instance.get_run_by_id(run.run_id).tags.get("dagster/max_retries") == "2"
    assert seen == {"limits": ("automat_pipeline", []), "retries": ("automat_pipeline", ["acme"])}
