"""The portal on the real stack (``automat ui``: webserver, daemon, API): a client sees the
uploaded product's Blender thumbnail and its GLB in 3D, orders a fresh Workbench thumbnail from the
basket, watches the order complete through Dagster and downloads it."""

import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import STEP_FIXTURES, fresh_home_env
from openpyxl import Workbook
from playwright.sync_api import expect
from portal_browser import Portal, chromium, new_context  # noqa: F401
from test_ui import PASSWORD, free_port, http, wait_for

pytestmark = pytest.mark.slow


def test_a_client_orders_a_thumbnail_in_the_portal_and_downloads_it(tmp_path: Path, chromium):  # noqa: F811
    env = fresh_home_env(tmp_path / "home")
    automat = str(Path(sys.executable).parent / "automat")
    subprocess.run([automat, "tenant", "create", "acme"], env=env, check=True, capture_output=True)
    subprocess.run(
        [automat, "user", "create", "--tenant", "acme", "--role", "client", "--email", "client@acme.example"],
        env=env | {"AUTOMAT_USER_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
    )
    inbox = tmp_path / "home" / "uploads" / "acme"
    workbook = Workbook()
    workbook.active.append(["PIM-ID", "Name", "CAD-Datei"])
    workbook.active.append(["SCREW-1", "Screw", "screw.step"])
    workbook.save(inbox / "products.xlsx")
    shutil.copyfile(STEP_FIXTURES / "occt" / "screw.step", inbox / "screw.step")
    port, api_port = free_port(), free_port()
    ui = subprocess.Popen(
        [automat, "ui", "--port", str(port), "--api-port", str(api_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{api_port}"
    context = new_context(chromium)
    try:
        wait_for("webserver and API", lambda: (h := http("GET", f"{api}/health")) and h["dagster"], seconds=120)
        token = http("POST", f"{api}/auth/login", {"email": "client@acme.example", "password": PASSWORD})
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
        page = portal.login("client@acme.example", PASSWORD)
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
