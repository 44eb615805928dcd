"""The upload inbox: ``<uploads>/<tenant>/<file>``; workbooks and STEP files, never moved or deleted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

KINDS = {".xlsx": "catalog", ".xls": "catalog", ".step": "step", ".stp": "step"}


@dataclass(frozen=True)
class Upload:
    tenant: str
    path: Path
    kind: str  # "catalog" | "step"
    mtime_ns: int


def scan(uploads_dir: Path) -> list[Upload]:
    """Every file of a known kind in every tenant folder, in a stable order."""
    found = []
    root = Path(uploads_dir)
    if not root.is_dir():
        return found
    for tenant_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(tenant_dir.iterdir()):
            kind = KINDS.get(path.suffix.lower())
            if kind and path.is_file() and not path.name.startswith((".", "~$")):
                found.append(Upload(tenant_dir.name, path, kind, path.stat().st_mtime_ns))
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def step_file_for(tenant_dir: Path, product) -> Path | None:
    """A product's STEP upload: the file its catalogue row names, else ``<PIM-ID or key>.step``/``.stp``."""
    if product.step_filename:
        path = tenant_dir / product.step_filename
        return path if path.is_file() else None
    for stem in dict.fromkeys((product.pim_id, product.key)):
        if "/" in stem or "\\" in stem or stem.startswith("."):  # a PIM-ID is no path
            continue
        for suffix in (".step", ".stp", ".STEP", ".STP"):
            path = tenant_dir / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None
