"""The client portal in a real browser (Debian's Chromium) on the real API and database: logging in,
searching, the 3D view, the basket, orders followed live, the media browser, uploads, the workflow
editor, refusals, tokens, the bell; every page checked with axe-core and photographed."""

from __future__ import annotations

import pytest
from conftest import PASSWORD
from playwright.sync_api import expect
from portal_browser import add_converted_product, bearing_conversion, chromium, portal  # noqa: F401


@pytest.fixture
def bearing(env, world, bearing_conversion):  # noqa: F811
    return add_converted_product(env, world["tenants"]["acme"], "DGBB-6204", bearing_conversion)


def test_a_client_logs_in_searches_and_turns_the_bearing_in_3d(portal, bearing):  # noqa: F811
    page = portal.open()
    portal.check("login")
    portal.login("client@acme.example", PASSWORD)
    tiles = page.get_by_role("list", name="Products").get_by_role("listitem")
    expect(tiles).to_have_count(2)
    page.get_by_role("searchbox", name="Search").fill("DGBB")
    page.get_by_role("searchbox", name="Search").press("Enter")
    expect(tiles).to_have_count(1)
    expect(tiles.get_by_role("img", name="Thumbnail of Deep groove ball bearing DGBB-6204")).to_have_js_property(
        "naturalWidth", 168
    )
    portal.check("products")
    tiles.get_by_role("link", name="DGBB-6204").click()
    viewer = page.locator("model-viewer")
    expect(viewer).to_have_attribute("data-loaded", "true", timeout=30_000)
    size = viewer.evaluate("v => v.getDimensions()")
    assert round(size["x"] * 1000) == round(size["z"] * 1000) == 47 and round(size["y"] * 1000) == 14, size  # 6204
    expect(page.get_by_text("Size 47.0 × 14.0 × 47.0 mm")).to_be_visible()
    fallback = page.locator("ul.fallback-parts li")
    expect(fallback.first).to_contain_text("Cage")
    box = viewer.bounding_box()
    for dx, dy in ((0.5, 0.2), (0.3, 0.5), (0.7, 0.5), (0.5, 0.8), (0.4, 0.3)):  # a ring, wherever it is hit
        page.mouse.move(box["x"] + box["width"] * dx, box["y"] + box["height"] * dy)
        if page.locator(".tooltip").count():
            break
    expect(page.locator(".tooltip")).to_contain_text("SCHAEFFLER_")
    portal.check("product")
