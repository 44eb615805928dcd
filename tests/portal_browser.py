"""Driving the portal in Debian's Chromium (Playwright for Python over the installed browser, never a
downloaded one), checking each page with axe-core, and the data the portal tests show: a demo bearing
converted for real (OpenCascade) with its GLBs, part list and a thumbnail, and products by the
hundred."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect, sync_playwright

from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import Product
from automat_pipeline.settings import REPO, Settings

CHROMIUM = Path("/usr/bin/chromium")  # Debian's (make system-packages)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = REPO / "automat_pipeline" / "portal" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


def launch(playwright):
    """Debian's Chromium, headless; a missing browser fails in CI and skips elsewhere, saying why."""
    if not CHROMIUM.is_file() or not AXE.is_file():
        reason = f"the portal tests need {CHROMIUM} (make system-packages) and {AXE} (make portal)"
        if Settings().deployment == "ci":
            pytest.fail(reason)
        pytest.skip(reason)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)


@pytest.fixture(scope="session")
def chromium():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


class Portal:
    """One browser tab on the portal: log in, go to a page, check it with axe, take its picture."""

    def __init__(self, page: Page, base: str, shots: Path):
        self.page, self.base, self.shots = page, base, shots
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and "Failed to load resource" not in m.text  # the API's refusals (4xx) the tests provoke
                and self.problems.append(f"console: {m.text}")
            ),
        )

    def open(self, route: str = "") -> Page:
        self.page.goto(f"{self.base}/portal/#/{route}")
        return self.page

    def login(self, email: str, password: str, route: str = "products") -> Page:
        page = self.open(route)
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_label("Password").press("Enter")  # the keyboard submits
        expect(page.get_by_role("button", name="Log out")).to_be_visible()
        return page

    def check(self, name: str) -> None:
        """axe-core on the page as it stands (0 serious or critical violations), and its screenshot."""
        results = self.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [
            f"{v['impact']} {v['id']}: {v['help']} ({[n['target'] for n in v['nodes']][:3]})"
            for v in results["violations"]
            if v["impact"] in SERIOUS
        ]
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        assert bad == [], f"{name}: {bad}"


def new_context(chromium):
    """A fresh browser context with axe-core loaded into every page before its own scripts (so the
    page's Content-Security-Policy stays on)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(path=str(AXE))
    return context


@pytest.fixture
def portal(live, chromium, tmp_path):
    """A fresh browser context on the live API; page errors and CSP violations fail the test."""
    context = new_context(chromium)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    portal = Portal(context.new_page(), live, shots)
    yield portal
    context.close()
    assert portal.problems == [], portal.problems


def thumbnail_png(label: str, size: int = 168) -> bytes:
    """A small real PNG with ``label`` on it (a thumbnail as the tests need one; Blender makes the real ones)."""
    image = Image.new("RGB", (size, size), (214, 223, 232))
    ImageDraw.Draw(image).text((10, size // 2 - 6), label, fill=(20, 30, 40))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def convert_bearing(folder: Path) -> Path:
    """A demo bearing (DGBB-6204) written as STEP and converted: model.glb, production.glb and
    cad_metadata.json as the cad_conversion asset writes them (its cage resolves to no library
    material: the magenta fallback)."""
    from automat_pipeline.bearings import CATALOGUE, write_step
    from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver
    from automat_pipeline.opencascade import convert_step

    step = write_step(CATALOGUE[0], folder / "source.step")
    resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES)
    result = convert_step(step, folder / "model.glb", resolver=resolver, production_path=folder / "production.glb")
    (folder / "cad_metadata.json").write_text(json.dumps(result.as_dict(), indent=1))
    return folder


@pytest.fixture(scope="session")
def bearing_conversion(tmp_path_factory) -> Path:
    """The demo bearing converted once for the session."""
    return convert_bearing(tmp_path_factory.mktemp("bearing"))


def add_thumbnailed_products(env, tenant_id: int, count: int) -> None:
    """``count`` products G-000… with a thumbnail each (a grid's worth)."""
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "grid"
    folder.mkdir(parents=True)
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        for n in range(count):
            pim_id = f"G-{n:03d}"
            product = Product(
                tenant_id=tenant_id, pim_id=pim_id, key=pim_id, name=f"Grid bearing {n}", materials={}, attributes={}
            )
            s.add(product)
            s.flush()
            (folder / f"{pim_id}.png").write_bytes(thumbnail_png(pim_id))
            repository.record_media(
                s, tenant_id, product.id, "thumbnail", "thumbnail", "completed", path=str(folder / f"{pim_id}.png")
            )


def add_converted_product(env, tenant_id: int, pim_id: str, conversion: Path, **columns) -> int:
    """A product whose conversion and thumbnail are done, files in the media folder, media recorded."""
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / str(tenant_id) / pim_id
    folder.mkdir(parents=True)
    for name in ("model.glb", "production.glb", "cad_metadata.json"):
        shutil.copyfile(conversion / name, folder / name)
    shutil.copyfile(conversion / "source.step", folder / f"{pim_id}.step")
    (folder / "thumbnail.png").write_bytes(thumbnail_png(pim_id))
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        product = Product(
            tenant_id=tenant_id,
            pim_id=pim_id,
            key=pim_id,
            name=columns.pop("name", f"Deep groove ball bearing {pim_id}"),
            category_key=columns.pop("category_key", "ball"),
            lagertyp=columns.pop("lagertyp", "Rillenkugellager"),
            materials={},
            attributes={},
            active=True,
        )
        s.add(product)
        s.flush()
        repository.record_file(s, tenant_id, folder / f"{pim_id}.step", "step", "1" * 64, product_id=product.id)
        for asset, name in (("glb_geometry", "model.glb"), ("glb_production", "production.glb")):
            repository.record_media(
                s, tenant_id, product.id, asset, "standard", "completed", path=str(folder / name), run_id="conversion"
            )
        repository.record_media(
            s,
            tenant_id,
            product.id,
            "thumbnail",
            "thumbnail",
            "completed",
            path=str(folder / "thumbnail.png"),
            run_id="thumbnails",
        )
        return product.id
