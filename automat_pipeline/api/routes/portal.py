"""The client portal: one page, its scripts and the browser libraries it loads, served by the API.

The page (``automat_pipeline/portal/app``) is public and holds no data: every datum comes from this
API with the caller's token. The libraries are npm packages (``automat_pipeline/portal/package.json``,
installed by ``make portal``) served as they are, and only the files named in ``VENDOR``. Kept out of
the OpenAPI schema: these are files, not operations.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

PORTAL = Path(__file__).resolve().parents[2] / "portal"
APP = PORTAL / "app"
MODULES = PORTAL / "node_modules"
VENDOR = {  # URL name → file in node_modules (package-lock.json pins the versions)
    "preact.mjs": "preact/dist/preact.mjs",
    "preact-hooks.mjs": "preact/hooks/dist/hooks.mjs",
    "htm.mjs": "htm/dist/htm.mjs",
    "model-viewer.mjs": "@google/model-viewer/dist/model-viewer.min.js",
    "drawflow.mjs": "drawflow/dist/drawflow.min.js",
    "drawflow.css": "drawflow/dist/drawflow.min.css",
}
MEDIA_TYPES = {".mjs": "text/javascript", ".css": "text/css"}

router = APIRouter(include_in_schema=False)


def _page() -> tuple[str, str]:
    """index.html and its Content-Security-Policy: scripts from this origin and the page's one inline
    script (the import map), by its hash, and WebAssembly (model-viewer's decoders); media and models as
    blob: URLs fetched with the token."""
    html = (APP / "index.html").read_text()
    import_map = re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    policy = (
        f"default-src 'self'; script-src 'self' 'wasm-unsafe-eval' 'sha256-{digest}'; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self' blob: data:; "
        "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
    return html, policy


PAGE, POLICY = _page()


@router.get("/")
@router.get("/portal")
def to_portal() -> RedirectResponse:
    return RedirectResponse("/portal/")


@router.get("/portal/")
def page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"})


@router.get("/portal/vendor/{name}")
def vendor(name: str) -> FileResponse:
    if name not in VENDOR:
        raise HTTPException(404, f"no portal library {name!r}")
    path = MODULES / VENDOR[name]
    if not path.is_file():
        raise HTTPException(404, f"{VENDOR[name]} is not installed: run make portal")
    return FileResponse(path, media_type=MEDIA_TYPES.get(Path(name).suffix), headers={"Cache-Control": "no-cache"})


def files() -> StaticFiles:
    """The portal's own scripts and styles (mounted under /portal after the routes above)."""
    return StaticFiles(directory=APP)
