"""One policy on every path: the tenant's allowed engines, order size and fallback material are
refused the same way at order submission, direct renders, workflow runs, output types and settings
(the render steps' own check, the upload sensor's thumbnails included, is in test_assets)."""

from __future__ import annotations

import pytest
from conftest import as_role, login

from automat_pipeline.db.database import session
from automat_pipeline.db.models import Tenant


def rules(env, world, **settings) -> None:
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.get(Tenant, world["tenants"]["acme"]).settings = settings


@pytest.fixture
def workbench_only(env, world):
    rules(env, world, render_engines_allowed=["workbench"])


def test_a_direct_render_asks_the_policy(api, world, workbench_only):
    refused = api.post(
        f"/products/{world['products']['6204-2RS']}/renders",
        headers=as_role(api, world, "pm"),
        json={"output_type": "still-web"},  # shipped: cycles
    )
    assert refused.status_code == 422, refused.text
    assert refused.json() == {
        "detail": "output type 'still-web' renders with cycles; this tenant allows workbench",
        "error_class": "engine_not_allowed",
    }


def test_a_workflow_run_asks_the_policy_for_each_output_type_it_would_make(api, world, workbench_only):
    ta = as_role(api, world, "ta")
    stills = {"version": 1, "nodes": [{"id": "s", "step": "still"}]}  # every still type: still-web is cycles
    assert api.put("/workflows/stills", headers=ta, json=stills).status_code == 200
    refused = api.post("/workflows/stills/runs", headers=ta, json={"product_ids": [world["products"]["6204-2RS"]]})
    assert refused.status_code == 422 and "renders with cycles" in refused.json()["detail"], refused.text
    thumbnails = {"version": 1, "nodes": [{"id": "t", "step": "thumbnail"}]}  # the thumbnail is workbench
    assert api.put("/workflows/thumbs", headers=ta, json=thumbnails).status_code == 200
    allowed = api.post("/workflows/thumbs/runs", headers=ta, json={"product_ids": [world["products"]["6204-2RS"]]})
    assert allowed.status_code == 503  # past the policy; Dagster is down in this fixture


def test_a_workflow_run_is_an_order_by_size(api, world, env):
    rules(env, world, max_order_size=1)
    ta = as_role(api, world, "ta")
    thumbnails = {"version": 1, "nodes": [{"id": "t", "step": "thumbnail"}]}
    assert api.put("/workflows/thumbs", headers=ta, json=thumbnails).status_code == 200
    product = world["products"]["6204-2RS"]
    refused = api.post("/workflows/thumbs/runs", headers=ta, json={"product_ids": [product, product]})
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "2 lines in a workflow run exceed the tenant's max_order_size of 1",
        "error_class": "too_large",
    }


def test_an_output_type_the_tenant_may_not_render_is_refused(api, world, workbench_only):
    ta = as_role(api, world, "ta")
    body = {"name": "hero", "kind": "still", "engine": "cycles"}
    refused = api.put("/output-types/hero", headers=ta, json=body)
    assert refused.status_code == 422 and "renders with cycles; this tenant allows workbench" in refused.text
    assert api.put("/output-types/hero", headers=ta, json=body | {"engine": "workbench"}).status_code == 200
    assert api.put("/output-types/hero", headers=ta, json=body).status_code == 422  # update, too


def test_a_fallback_material_must_be_in_the_library(api, world, env):
    ta = as_role(api, world, "ta")
    settings = api.get("/settings", headers=ta).json()
    refused = api.put("/settings", headers=ta, json=settings | {"fallback_material": "Unobtainium"})
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "fallback_material 'Unobtainium' is not in the tenant's material library",
        "error_class": "unknown_material",
    }
    assert api.get("/settings", headers=ta).json()["fallback_material"] == settings["fallback_material"]
    client = login(api, "client@acme.example")
    assert api.put("/settings", headers=client, json=settings).status_code == 403
