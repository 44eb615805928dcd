"""Tenant admins manage their material library and aliases over the API: validated, isolated per
tenant, each change naming the products it makes look different (the remake through a live
Dagster is in test_ui)."""

from __future__ import annotations

import pytest
from conftest import as_role, login

from automat_pipeline.db.database import session
from automat_pipeline.db.models import MediaAsset, Product, ProductFile
from automat_pipeline.materials import FALLBACK

STEEL = "SCHAEFFLER_010101_Steel-Bare"
ZINC = {"name": "ACME_Zinc", "base_color": [0.7, 0.7, 0.72], "metallic": 1.0, "roughness": 0.4}
PARTS = ["Inner_Ring", "Ball_1", "Cage", "Shield"]  # shipped: Steel-Bare, Polished, fallback, fallback


@pytest.fixture
def converted(env, world):
    """6204-2RS converted: its production GLB recorded with its part names, as cad_conversion does."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.add(
            MediaAsset(
                tenant_id=world["tenants"]["acme"],
                product_id=world["products"]["6204-2RS"],
                asset="glb_production",
                output_type="standard",
                status="completed",
                details={"parts": PARTS},
            )
        )
    return world["products"]["6204-2RS"]


def test_the_library_lists_shipped_and_own_materials_with_what_names_them(api, world, converted):
    ta = as_role(api, world, "ta")
    assert api.put("/materials/ACME_Zinc", headers=ta, json=ZINC).json()["products"] == 0  # nothing uses it yet
    assert (
        api.put("/material-aliases", headers=ta, json=[{"pattern": "Cage", "material": "ACME_Zinc"}]).status_code == 200
    )
    listed = {m["name"]: m for m in api.get("/materials", headers=as_role(api, world, "pm")).json()}
    assert (listed["ACME_Zinc"]["origin"], listed["ACME_Zinc"]["aliases"]) == ("tenant", ["Cage"])
    assert (listed[STEEL]["origin"], listed[FALLBACK]["fallback"]) == ("shipped", True)
    aliases = api.get("/material-aliases", headers=ta).json()
    assert aliases[0] == {"pattern": "Cage", "material": "ACME_Zinc", "origin": "tenant"}
    assert {a["origin"] for a in aliases[1:]} == {"shipped"}  # tried after the tenant's
    as_beta = login(api, "ga@acme.example") | {"X-Tenant-Id": str(world["tenants"]["beta"])}
    assert "ACME_Zinc" not in {m["name"] for m in api.get("/materials", headers=as_beta).json()}
    assert [a["origin"] for a in api.get("/material-aliases", headers=as_beta).json()] == ["shipped"] * 8


def test_a_change_names_the_parts_it_changes_and_a_dry_run_changes_nothing(api, world, converted):
    ta = as_role(api, world, "ta")
    api.put("/materials/ACME_Zinc", headers=ta, json=ZINC)
    aliases = [{"pattern": "Cage", "material": "ACME_Zinc"}]
    preview = api.put("/material-aliases", headers=ta, json=aliases, params={"dry_run": True}).json()
    assert preview == {
        "applied": False,
        "products": 1,
        "product_ids": [converted],
        "examples": [
            {
                "product_id": converted,
                "pim_id": "6204-2RS",
                "parts": {"Cage": {"before": FALLBACK, "after": "ACME_Zinc"}},
            }
        ],
    }
    assert [a["origin"] for a in api.get("/material-aliases", headers=ta).json()] == ["shipped"] * 8
    assert api.put("/material-aliases", headers=ta, json=aliases).json()["applied"] is True
    recoloured = api.put("/materials/ACME_Zinc", headers=ta, json=ZINC | {"base_color": [0.9, 0.9, 0.9]}).json()
    assert recoloured["examples"][0]["parts"] == {"Cage": {"before": "ACME_Zinc", "after": "ACME_Zinc"}}
    described = api.put(
        "/materials/ACME_Zinc", headers=ta, json=ZINC | {"base_color": [0.9, 0.9, 0.9], "description": "zinc"}
    ).json()
    assert described["products"] == 0  # a description does not change a render
    override = api.put(f"/materials/{STEEL}", headers=ta, json={**ZINC, "name": STEEL, "metallic": 0.0}).json()
    assert override["examples"][0]["parts"] == {"Inner_Ring": {"before": STEEL, "after": STEEL}}
    assert {m["name"]: m["origin"] for m in api.get("/materials", headers=ta).json()}[STEEL] == "override"
    restored = api.delete(f"/materials/{STEEL}", headers=ta).json()  # the shipped one comes back
    assert (restored["products"], restored["applied"]) == (1, True)
    assert {m["name"]: m["origin"] for m in api.get("/materials", headers=ta).json()}[STEEL] == "shipped"


def test_what_depends_on_a_material_keeps_it(api, world, converted):
    ta = as_role(api, world, "ta")
    api.put("/materials/ACME_Zinc", headers=ta, json=ZINC)
    api.put("/material-aliases", headers=ta, json=[{"pattern": "Cage", "material": "ACME_Zinc"}])
    named = api.delete("/materials/ACME_Zinc", headers=ta)
    assert named.status_code == 409 and "named by the aliases 'Cage'" in named.json()["detail"]
    assert api.put("/material-aliases", headers=ta, json=[]).json()["examples"][0]["parts"] == {
        "Cage": {"before": "ACME_Zinc", "after": FALLBACK}
    }
    settings = api.get("/settings", headers=ta).json()
    assert api.put("/settings", headers=ta, json=settings | {"fallback_material": "ACME_Zinc"}).status_code == 200
    fallback = api.delete("/materials/ACME_Zinc", headers=ta)
    assert fallback.status_code == 409 and "fallback_material" in fallback.json()["detail"]
    assert api.put("/settings", headers=ta, json=settings).status_code == 200
    assert api.delete("/materials/ACME_Zinc", headers=ta, params={"dry_run": True}).json()["applied"] is False
    assert api.delete("/materials/ACME_Zinc", headers=ta).status_code == 200
    assert api.delete("/materials/ACME_Zinc", headers=ta).status_code == 404
    shipped = api.delete(f"/materials/{STEEL}", headers=ta)
    assert shipped.status_code == 409 and "shipped: override it instead" in shipped.json()["detail"]


@pytest.mark.parametrize(
    "body, problem",
    [
        (ZINC | {"base_color": [1.2, 0, 0]}, "less than or equal to 1"),
        (ZINC | {"metallic": -0.1}, "greater than or equal to 0"),
        (ZINC | {"roughness": "NaN"}, "finite number"),
        (ZINC | {"base_color": [0.5, 0.5]}, "Field required"),
        (ZINC | {"name": "../zinc"}, "should match pattern"),  # before the path is compared
        (ZINC | {"shininess": 1}, "Extra inputs"),
    ],
)
def test_material_values_are_checked(api, world, body, problem):
    response = api.put("/materials/ACME_Zinc", headers=as_role(api, world, "ta"), json=body)
    assert response.status_code == 422 and problem in response.text, response.text


def test_aliases_that_would_surprise_are_refused_with_each_reason(api, world):
    ta = as_role(api, world, "ta")
    aliases = [
        {"pattern": "*Cage*", "material": STEEL},
        {"pattern": "Brass_Cage", "material": STEEL},
        {"pattern": "*cage*", "material": STEEL},
        {"pattern": "Nut", "material": "Unobtainium"},
        {"pattern": "[abc]", "material": STEEL},
    ]
    refused = api.put("/material-aliases", headers=ta, json=aliases[:4])
    assert refused.status_code == 422
    assert refused.json() == {
        "detail": "alias 2 ('Brass_Cage') can never match: alias 1 ('*Cage*') comes first and matches every part it "
        "matches; alias 3 ('*cage*') repeats alias 1; alias 4 ('Nut'): material 'Unobtainium' is not in the library",
        "error_class": "invalid_aliases",
    }
    assert api.put("/material-aliases", headers=ta, json=aliases[4:]).status_code == 422  # brackets: no sets
    assert api.put("/material-aliases", headers=ta, json=[aliases[0]] * 501).status_code == 422
    assert [a["origin"] for a in api.get("/material-aliases", headers=ta).json()] == ["shipped"] * 8


@pytest.mark.parametrize(
    "method, path, body, permission",
    [
        ("GET", "/materials", None, "read"),
        ("GET", "/material-aliases", None, "read"),
        ("PUT", "/materials/ACME_Zinc", ZINC, "write"),
        ("DELETE", "/materials/ACME_Zinc", None, "write"),
        ("PUT", "/material-aliases", [], "write"),
        ("POST", "/materials/remake", {"product_ids": [1]}, "write"),
    ],
)
@pytest.mark.parametrize("role", ["ga", "ta", "pm", "client"])
def test_permission_cell(api, world, converted, role, method, path, body, permission):
    """Readers: PMs and admins; writers: tenant and global admins (Permission.trigger_renders and .settings)."""
    allowed = role in (("ga", "ta", "pm") if permission == "read" else ("ga", "ta"))
    response = api.request(method, path, headers=as_role(api, world, role), json=body)
    assert (response.status_code != 403) == allowed, response.text


def test_a_remake_takes_the_tenants_converted_products_only(api, world, env, converted):
    ta = as_role(api, world, "ta")
    foreign = api.post("/materials/remake", headers=ta, json={"product_ids": [converted, world["products"]["B-1"]]})
    assert foreign.status_code == 404 and str(world["products"]["B-1"]) in foreign.json()["detail"]
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        waiting = Product(tenant_id=world["tenants"]["acme"], pim_id="NEW", key="NEW", name="New", active=True)
        s.add(waiting)
        s.flush()
        s.add(
            ProductFile(
                tenant_id=waiting.tenant_id,
                product_id=waiting.id,
                filename="NEW.stp",
                kind="step",
                sha256="1" * 64,
                size_bytes=1,
                status="failed",
            )
        )
    unconverted = api.post("/materials/remake", headers=ta, json={"product_ids": [converted, waiting.id]})
    assert unconverted.status_code == 422 and unconverted.json()["error_class"] == "not_converted"
    down = api.post("/materials/remake", headers=ta, json={"product_ids": [converted]})
    assert down.status_code == 503 and "nothing was launched" in down.json()["detail"]
