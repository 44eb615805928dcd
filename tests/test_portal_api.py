"""What the API adds for the portal: thumbnails, the has-media filter and the facets of the product
list, a product's parts with their materials, the order rules for every role that orders; and the
portal's files (its page with a Content-Security-Policy, only the libraries it names)."""

from __future__ import annotations

from conftest import as_role, login
from portal_browser import add_converted_product, bearing_conversion  # noqa: F401

from automat_pipeline.db.database import session
from automat_pipeline.db.models import Tenant


def test_the_product_list_names_thumbnails_filters_by_media_and_counts_facets(api, world, env, bearing_conversion):  # noqa: F811
    acme = world["tenants"]["acme"]
    converted = add_converted_product(env, acme, "DGBB-6204", bearing_conversion, category_key="ball")
    add_converted_product(env, world["tenants"]["beta"], "B-2", bearing_conversion, category_key="roller")
    client = login(api, "client@acme.example")
    listed = {p["pim_id"]: p for p in api.get("/products", headers=client).json()["items"]}
    assert listed["6204-2RS"]["thumbnail"] is None
    thumbnail = listed["DGBB-6204"]["thumbnail"]
    assert api.get(f"/media/{thumbnail}/file", headers=client).content.startswith(b"\x89PNG")
    assert api.get(f"/products/{converted}", headers=client).json()["thumbnail"] == thumbnail
    with_media = api.get("/products", headers=client, params={"has_media": True}).json()
    without = api.get("/products", headers=client, params={"has_media": False}).json()
    assert [p["pim_id"] for p in with_media["items"]] == ["DGBB-6204"] and with_media["total"] == 1
    assert [p["pim_id"] for p in without["items"]] == ["6204-2RS"]
    facets = api.get("/products/facets", headers=client).json()
    assert facets["category_key"] == [{"value": "ball", "count": 2}]  # beta's roller is not acme's
    assert facets["lagertyp"] == [{"value": "Rillenkugellager", "count": 2}]


def test_a_products_parts_say_which_fell_back_to_magenta(api, world, env, bearing_conversion):  # noqa: F811
    product = add_converted_product(env, world["tenants"]["acme"], "DGBB-6204", bearing_conversion)
    beta = add_converted_product(env, world["tenants"]["beta"], "B-2", bearing_conversion)
    client = login(api, "client@acme.example")
    parts = api.get(f"/products/{product}/parts", headers=client).json()
    assert parts["fallback_parts"] == ["Cage"]
    by_name = {p["name"]: p for p in parts["parts"]}
    assert by_name["Outer_Ring"]["material"] == "SCHAEFFLER_010101_Steel-Bare"
    assert by_name["Cage"]["material_source"] == "fallback" and by_name["Cage"]["color"].startswith("#")
    assert len(parts["parts"]) == 12  # two rings, nine balls, the cage
    assert api.get(f"/products/{beta}/parts", headers=client).status_code == 404  # another tenant's
    unconverted = world["products"]["6204-2RS"]
    missing = api.get(f"/products/{unconverted}/parts", headers=client)
    assert missing.status_code == 404 and "no converted CAD file" in missing.json()["detail"]


def test_every_role_that_orders_reads_the_order_rules(api, world, env):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        rules = {"max_order_size": 7, "render_engines_allowed": ["workbench"]}
        s.get(Tenant, world["tenants"]["acme"]).settings = rules
    for role in ("client", "pm", "ta", "ga"):
        rules = api.get("/order-rules", headers=as_role(api, world, role)).json()
        assert rules == {"max_order_size": 7, "render_engines_allowed": ["workbench"]}, role
    assert api.get("/order-rules", headers=login(api, "client@beta.example")).json()["max_order_size"] == 500
    assert api.get("/settings", headers=login(api, "client@acme.example")).status_code == 403  # the rest stays


def test_the_portal_page_its_files_and_nothing_else(api):
    page = api.get("/portal/")
    assert page.status_code == 200 and '<script type="module" src="/portal/js/main.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval' 'sha256-" in policy and "unsafe-inline" not in policy.split(";")[1]
    assert api.get("/", follow_redirects=False).headers["location"] == "/portal/"
    assert api.get("/portal/js/main.js").headers["content-type"].startswith("text/javascript")
    viewer = api.get("/portal/vendor/model-viewer.mjs")
    assert viewer.status_code == 200 and viewer.headers["content-type"].startswith("text/javascript")
    for path in ("/portal/vendor/axe.min.js", "/portal/vendor/..%2Fpackage.json", "/portal/../pyproject.toml"):
        assert api.get(path).status_code == 404, path
    assert not [p for p in api.app.openapi()["paths"] if p.startswith("/portal") or p == "/"]
