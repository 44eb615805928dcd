"""The client portal in a real browser (Debian's Chromium) on the real API and database: logging in,
searching, the 3D view, the basket, orders followed live, the media browser, uploads, the workflow
editor, refusals, tokens, the bell; every page checked with axe-core and photographed."""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, fresh_home_env, wait_for
from openpyxl import Workbook
from playwright.sync_api import expect
from portal_browser import (  # noqa: F401
    Portal,
    add_converted_product,
    add_thumbnailed_products,
    bearing_conversion,
    chromium,
    new_context,
    portal,
    thumbnail_png,
)
from sqlalchemy import select, text
from test_ui import PASSWORD as STACK_PASSWORD
from test_ui import http, screw_catalogue, start_ui

from automat_pipeline.api.security import Role, access_token
from automat_pipeline.catalog_import import attach_report, import_workbook
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import CatalogImport, Order, OrderLine, Tenant, User
from automat_pipeline.notify.models import Notification


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
    expect(viewer).to_have_attribute("data-loaded", "true", timeout=90_000)  # software WebGL on a busy machine
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


def line_ids(env, order_number: str) -> dict[str, int]:
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        rows = s.execute(
            select(OrderLine.output_type, OrderLine.id)
            .join(Order, Order.id == OrderLine.order_id)
            .where(Order.number == order_number)
        )
        return dict(rows.all())


def as_the_sensor(env, line_id: int, run_id: str, **outcome) -> None:
    """What the pipeline's order_lines sensor records: the run launched, its progress, its outcome."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.execute(
            text("UPDATE order_lines SET run_id = :r, state = 'queued' WHERE id = :l"), {"r": run_id, "l": line_id}
        )
        if "progress" in outcome:
            repository.record_progress(s, line_id, run_id, outcome["progress"])
            return
        outputs = repository.runs_outputs(s, [run_id])[run_id]
        repository.record_line_outcome(s, line_id, run_id, outputs=outputs, ended_at=datetime.now(UTC), **outcome)


def test_a_client_orders_from_the_basket_and_follows_the_order_live_to_its_zip(portal, bearing, env, world):  # noqa: F811
    page = portal.login("client@acme.example", PASSWORD)
    tile = page.get_by_role("listitem").filter(has_text="DGBB-6204")
    tile.get_by_role("checkbox").focus()
    page.keyboard.press("Space")  # the keyboard picks
    page.get_by_role("link", name="Basket (1)").click()
    page.get_by_role("checkbox", name="thumbnail").check()
    page.get_by_role("checkbox", name="still-web").check()
    expect(page.locator("#order-size")).to_have_text("2 lines (1 products × 2 output types)")
    expect(page.locator("#max-order-size")).to_contain_text("500")
    expect(page.locator("#engines-allowed")).to_contain_text("cycles, eevee, workbench")
    expect(page.get_by_text("Width and height in pixels (square images).").first).to_be_visible()  # help texts
    portal.check("basket")
    page.get_by_role("button", name="Submit the order (2 lines)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Order ORD-")
    number = page.get_by_role("heading", level=1).inner_text().removeprefix("Order ")
    expect(page.get_by_text("Waiting to launch").first).to_be_visible()  # Dagster is down: pending
    lines = line_ids(env, number)
    as_the_sensor(env, lines["thumbnail"], "run-1", progress=40)
    expect(page.locator(f"tr[data-line='{lines['thumbnail']}']")).to_contain_text("40%")  # no reload
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # the render's file, from this line's run
        media = Path(env["AUTOMAT_MEDIA_DIR"]) / "render.png"
        media.write_bytes(thumbnail_png("rendered"))
        repository.record_media(
            s, world["tenants"]["acme"], bearing, "thumbnail", "thumbnail", "completed", path=str(media), run_id="run-1"
        )
    as_the_sensor(env, lines["thumbnail"], "run-1", state="completed")
    as_the_sensor(
        env,
        lines["still-web"],
        "run-2",
        state="failed",
        error_class="timeout",
        reason="Blender did not finish in 300 s",
    )
    expect(page.locator(".badge").first).to_have_text("completed with failures")
    expect(page.locator(f"tr[data-line='{lines['still-web']}']")).to_contain_text(
        "timeout: Blender did not finish in 300 s"
    )
    portal.check("order")
    with page.expect_download() as downloaded:
        page.get_by_role("button", name="Download all files (ZIP)").click()
    assert downloaded.value.suggested_filename == f"{number}.zip"
    with zipfile.ZipFile(downloaded.value.path()) as archive:
        assert archive.namelist() == ["DGBB-6204/thumbnail-thumbnail.png"]
        assert archive.read("DGBB-6204/thumbnail-thumbnail.png") == media.read_bytes()


def submitted_order(base: str, email: str, product_id: int) -> dict:
    token = httpx.post(f"{base}/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    order = httpx.post(f"{base}/orders", headers=headers).json()
    line = {"product_id": product_id, "output_type": "thumbnail"}
    httpx.post(f"{base}/orders/{order['id']}/lines", headers=headers, json=line)
    return httpx.post(f"{base}/orders/{order['id']}/submit", headers=headers).json()


def test_a_project_manager_rejects_from_the_board_and_the_client_resubmits(portal, bearing, live):  # noqa: F811
    order = submitted_order(live, "client@acme.example", bearing)
    page = portal.login("pm@acme.example", PASSWORD, "orders")
    expect(page.get_by_role("heading", level=1)).to_have_text("Order board")
    expect(page.get_by_label("submitted (1)")).to_be_visible()  # counts per status
    page.get_by_label("draft (0)").check()
    expect(page.get_by_text("No orders in these states.")).to_be_visible()
    page.get_by_label("draft (0)").uncheck()
    page.get_by_label("submitted (1)").check()
    portal.check("board")
    page.get_by_role("link", name=order["number"]).click()
    page.get_by_role("button", name="Reject…").click()
    page.get_by_label("Why is it rejected?").fill("Please order stills, not thumbnails")
    page.get_by_role("button", name="Reject the order").click()
    expect(page.get_by_role("alert")).to_contain_text("Rejected: Please order stills, not thumbnails")
    page.get_by_role("button", name="Log out").click()
    page = portal.login("client@acme.example", PASSWORD, f"orders/{order['id']}")
    expect(page.get_by_role("alert")).to_contain_text("Please order stills, not thumbnails")
    page.get_by_role("button", name="Back to draft, to submit again").click()
    expect(page.locator(".badge").first).to_have_text("draft")
    expect(page.get_by_text("resubmitted by user")).to_be_visible()  # the history keeps the rejection
    expect(page.get_by_text("rejected by user")).to_be_visible()


def test_the_media_browser_filters_selects_many_and_zips_them(portal, bearing):  # noqa: F811
    page = portal.login("client@acme.example", PASSWORD, "media")
    items = page.get_by_role("list", name="Media").get_by_role("listitem")
    expect(items).to_have_count(3)  # the thumbnail and both GLBs
    page.get_by_label("Made by step").select_option("glb_production")
    expect(items).to_have_count(1)
    page.get_by_label("Made by step").select_option("")
    expect(items).to_have_count(3)
    page.get_by_role("button", name="Select all 3 loaded files").click()
    portal.check("media")
    with page.expect_download() as downloaded:
        page.get_by_role("button", name="Download 3 as ZIP").click()
    with zipfile.ZipFile(downloaded.value.path()) as archive:
        assert sorted(name.split("/")[1] for name in archive.namelist()) == [
            "glb_geometry-standard.glb",
            "glb_production-standard.glb",
            "thumbnail-thumbnail.png",
        ]


def test_a_dropped_workbook_shows_its_rejected_row_and_why(portal, env, world, tmp_path):  # noqa: F811
    book = Workbook()
    for row in (["PIM-ID", "Name", "CAD-Datei"], ["N-1", "Nut", "n1.stp"], ["N-2", None, None]):
        book.active.append(row)
    book.save(tmp_path / "list.xlsx")
    page = portal.login("client@acme.example", PASSWORD, "uploads")
    dropped = page.evaluate_handle(
        """([name, data]) => { const t = new DataTransfer();
            t.items.add(new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], name)); return t; }""",
        ["list.xlsx", base64.b64encode((tmp_path / "list.xlsx").read_bytes()).decode()],
    )
    page.dispatch_event(".dropzone", "drop", {"dataTransfer": dropped})
    expect(page.get_by_text("Received; waiting for the pipeline to read it…")).to_be_visible()
    inbox = Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme"
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # what the pipeline's import does
        tenant = repository.tenant(s, "acme", create=False)
        result = import_workbook(s, tenant, inbox / "list.xlsx", "sensor")
        attach_report(s, s.get(CatalogImport, result.import_id), inbox / "list.xlsx", Path(env["AUTOMAT_MEDIA_DIR"]))
    rejected = page.locator("table.rejected tbody tr")
    expect(rejected).to_have_count(1)
    expect(rejected).to_contain_text("3")  # Excel's row number
    expect(rejected).to_contain_text("name")
    expect(page.locator(".outcome .badge")).to_have_text("ok with rejections")
    portal.check("uploads")
    with page.expect_download() as report:
        page.get_by_role("button", name="Download the import report").click()
    assert Path(report.value.path()).read_bytes().startswith(b"PK")


def drag(page, source, target) -> None:
    start, end = source.bounding_box(), target.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=8)
    page.mouse.up()


def test_the_workflow_editor_marks_the_node_and_edge_each_error_names_then_saves_and_runs(portal, bearing):  # noqa: F811
    page = portal.login("ta@acme.example", PASSWORD, "workflows")
    page.get_by_label("Name").fill("preview")
    page.get_by_role("button", name="Create").click()
    page.get_by_role("button", name="Add thumbnail").click()
    page.get_by_role("button", name="Add product_catalog").click()
    catalog = page.locator(".drawflow-node.step-product_catalog")
    expect(catalog).to_have_class(re.compile(r"\binvalid\b"))  # per tenant, among per-product steps
    expect(catalog.locator("[data-errors]")).to_contain_text("runs per tenant")
    expect(page.locator(".drawflow-node.step-thumbnail")).not_to_have_class(re.compile(r"\binvalid\b"))
    expect(catalog.get_by_text("File names in the tenant's inbox to import")).to_be_visible()  # parameter help
    portal.check("workflow-invalid")
    catalog.get_by_role("button", name="Remove node product_catalog").click()
    expect(page.locator("#validation")).to_contain_text("Valid: 1 steps")
    page.get_by_role("button", name="Add step_file").click()
    drag(page, page.locator(".step-step_file .output_1"), page.locator(".step-thumbnail .input_1"))
    expect(page.locator("#validation")).to_contain_text("edge step_file→thumbnail: the asset graph has no edge")
    expect(page.locator(".connection.invalid")).to_have_count(1)
    page.get_by_role("button", name="remove edge step_file to thumbnail").click()
    page.get_by_label("output types").first.fill("thumbnail")
    expect(page.locator("#validation")).to_contain_text("Valid: 2 steps, 0 edges")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#workflow-result")).to_contain_text("Saved as revision 1")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#workflow-result")).to_contain_text("A run would make step_file, thumbnail")
    expect(page.locator("#workflow-result")).to_contain_text('"output_types"')
    page.get_by_label("Product").select_option(label="DGBB-6204")
    page.get_by_role("button", name="Run for this product").click()  # Dagster is down
    expect(page.get_by_role("alert")).to_contain_text("The pipeline (Dagster) does not answer, so nothing was launched")
    portal.check("workflow")


def test_a_client_is_refused_another_tenants_and_a_tenant_admins_pages(portal, world, live):  # noqa: F811
    other = submitted_order(live, "client2@acme.example", world["products"]["6204-2RS"])
    page = portal.login("client@acme.example", PASSWORD)
    expect(page.get_by_role("link", name="Settings")).to_have_count(0)
    portal.open(f"products/{world['products']['B-1']}")
    expect(page.get_by_role("alert")).to_contain_text(f"Not found: no product {world['products']['B-1']}")
    portal.open(f"orders/{other['id']}")
    expect(page.get_by_role("alert")).to_contain_text(f"Not found: no order {other['id']}")
    portal.open("settings")
    expect(page.get_by_role("alert")).to_contain_text("Not allowed for your role (client)")
    expect(page.get_by_role("alert")).to_contain_text("role client may not settings")
    portal.check("refused")


def test_an_expired_token_is_refreshed_and_a_deactivated_user_is_sent_to_login(portal, env, world):  # noqa: F811
    page = portal.login("client@acme.example", PASSWORD)
    before = page.evaluate("JSON.parse(sessionStorage.getItem('automat.session'))")
    forged = access_token("not the secret, but long enough to sign", 5, Role.client, world["tenants"]["acme"])
    page.evaluate(
        "t => { const s = JSON.parse(sessionStorage['automat.session']); s.access = t; "
        "sessionStorage['automat.session'] = JSON.stringify(s); }",
        forged,
    )
    page.reload()
    page.get_by_role("link", name="Orders").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My orders")
    # the heading shows before the list's request comes back: 401, refreshed, answered
    page.wait_for_function("f => JSON.parse(sessionStorage.getItem('automat.session')).access !== f", arg=forged)
    after = page.evaluate("JSON.parse(sessionStorage.getItem('automat.session'))")
    assert after["refresh"] != before["refresh"] and after["access"] != forged
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.execute(text("UPDATE users SET active = false WHERE email = 'client@acme.example'"))
    # Its next request signs it out: the page's own, or the bell's poll if that comes first (a click
    # on the nav could find the page already gone to the login form).
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    expect(page.get_by_role("status")).to_contain_text("this account is deactivated")


def test_the_bell_shows_the_feed_links_orders_and_marks_what_it_showed_read(portal, env, chromium):  # noqa: F811
    url = env["AUTOMAT_DATABASE_URL"]
    with session(url) as s, s.begin():
        client = s.scalar(select(User).where(User.email == "client@acme.example"))
        s.add(
            Notification(
                tenant_id=client.tenant_id,
                user_id=client.id,
                key="test:bell",
                category="orders",
                kind="order.completed",
                title="ORD-2026-000001 finished: 1 of 1 succeeded",
                body="every line completed",
                data={"order_id": 1},
                shown_at=datetime.now(UTC),  # delivered in-app, as the deliverer marks it
            )
        )
    page = portal.login("client@acme.example", PASSWORD)
    page.get_by_role("button", name="Notifications 1 unread").click()
    feed = page.get_by_role("region", name="Notifications")
    expect(feed).to_contain_text("every line completed")
    expect(feed.get_by_role("link", name="ORD-2026-000001 finished: 1 of 1 succeeded")).to_have_attribute(
        "href", "#/orders/1"
    )
    expect(page.get_by_role("button", name="Notifications 0 unread")).to_be_visible()
    with session(url) as s:
        assert s.scalar(select(Notification.read_at).where(Notification.key == "test:bell")) is not None


def test_settings_show_each_help_text_and_the_api_refusal_beside_its_field(portal, env, world):  # noqa: F811
    page = portal.login("ta@acme.example", PASSWORD, "settings")
    size = page.get_by_label("Max order size")
    expect(size).to_have_value("500")
    expect(page.locator("#ts-max_order_size-help")).to_have_text("Most lines one order may hold.")
    expect(page.locator("#ts-cad-timeout_seconds-help")).to_contain_text("fails with class timeout")  # nested
    size.fill("0")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#ts-max_order_size-error")).to_contain_text("greater than or equal to 1")
    expect(size).to_have_attribute("aria-invalid", "true")
    size.fill("3")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        assert s.get(Tenant, world["tenants"]["acme"]).settings["max_order_size"] == 3
    page.get_by_label("Output type", exact=True).select_option("still-web")
    expect(page.locator("#ot-engine-help")).to_contain_text("path-traced")
    portal.check("settings")


def test_a_grid_of_100_thumbnails_keeps_every_tile_in_place(portal, env, world):  # noqa: F811
    add_thumbnailed_products(env, world["tenants"]["acme"], 100)
    page = portal.open("products")
    portal.login("client@acme.example", PASSWORD)
    tiles = page.get_by_role("list", name="Products").get_by_role("listitem")
    expect(tiles).to_have_count(100)
    page.evaluate("""() => { window.shifts = 0; new PerformanceObserver(list => list.getEntries()
        .forEach(e => { window.shifts += e.value; })).observe({type: 'layout-shift'}); }""")  # while images arrive
    placed = [tiles.nth(i).bounding_box() for i in (0, 57, 99)]
    expect(page.locator("ul.grid img.thumb")).to_have_count(99)  # and 6204-2RS, which has none yet
    expect(tiles.first.get_by_role("img", name="Thumbnail of Bearing 6204-2RS")).to_have_text("no image yet")
    page.wait_for_function(
        "[...document.querySelectorAll('ul.grid img.thumb')].every(i => i.complete && i.naturalWidth)"
    )
    assert [tiles.nth(i).bounding_box() for i in (0, 57, 99)] == placed  # the images arrived; nothing moved
    assert page.evaluate("window.shifts") == 0
    expect(page.get_by_text("101 products, 1–100 shown")).to_be_visible()
    page.get_by_role("button", name="Next page").click()
    expect(tiles).to_have_count(1)


@pytest.mark.slow
def test_on_the_real_stack_a_client_orders_a_thumbnail_follows_it_and_downloads_it(tmp_path: Path, chromium):  # noqa: F811
    """``automat ui``: the uploaded product's Blender thumbnail and GLB in 3D, a Workbench thumbnail ordered
    from the basket, followed to completed through Dagster, its ZIP downloaded."""
    env = fresh_home_env(tmp_path / "home")
    automat = str(Path(sys.executable).parent / "automat")
    subprocess.run([automat, "tenant", "create", "acme"], env=env, check=True, capture_output=True)
    subprocess.run(
        [automat, "user", "create", "--tenant", "acme", "--role", "client", "--email", "client@acme.example"],
        env=env | {"AUTOMAT_USER_PASSWORD": STACK_PASSWORD},
        check=True,
        capture_output=True,
    )
    screw_catalogue(tmp_path / "home" / "uploads" / "acme")
    ui, _, api = start_ui(automat, env)
    context = new_context(chromium)
    try:
        wait_for("webserver and API", lambda: (h := http("GET", f"{api}/health")) and h["dagster"], seconds=120)
        token = http("POST", f"{api}/auth/login", {"email": "client@acme.example", "password": STACK_PASSWORD})
        wait_for(
            "the sensor's import, conversion and thumbnail",
            lambda: (
                (page := http("GET", f"{api}/products", token=token["access_token"]))
                and page["items"]
                and page["items"][0]["thumbnail"]
            ),
        )
        shots = tmp_path / "screenshots"
        shots.mkdir()
        portal = Portal(context.new_page(), api, shots)
        page = portal.login("client@acme.example", STACK_PASSWORD)
        tile = page.get_by_role("listitem").filter(has_text="SCREW-1")
        expect(tile.get_by_role("img", name="Thumbnail of Screw")).to_have_js_property("naturalWidth", 256)  # Blender's
        tile.get_by_role("link", name="SCREW-1").click()
        expect(page.locator("model-viewer")).to_have_attribute("data-loaded", "true", timeout=60_000)
        page.get_by_role("button", name="Add to the basket").click()
        page.get_by_role("link", name="Basket (1)").click()
        page.get_by_role("checkbox", name="thumbnail").check()
        page.get_by_role("button", name="Submit the order (1 lines)").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Order ORD-")
        expect(page.locator(".badge").first).to_have_text("completed", timeout=180_000)  # followed live
        portal.check("order-completed")
        with page.expect_download() as downloaded:
            page.get_by_role("button", name="Download all files (ZIP)").click()
        with zipfile.ZipFile(downloaded.value.path()) as archive:
            assert archive.namelist() == ["SCREW-1/thumbnail-thumbnail.png"]
            assert archive.read("SCREW-1/thumbnail-thumbnail.png").startswith(b"\x89PNG")
        assert portal.problems == [], portal.problems
    finally:
        context.close()
        ui.send_signal(signal.SIGINT)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            ui.kill()
