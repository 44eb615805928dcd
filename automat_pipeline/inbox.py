"""The upload inbox: ``<uploads>/<tenant>/<file>``; workbooks and STEP files, never moved or deleted."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

KINDS = {".xlsx": "catalog", ".xls": "catalog", ".step": "step", ".stp": "step"}
STEP_SUFFIXES = (".step", ".stp", ".STEP", ".STP")


@dataclass(frozen=True)
class Upload:
    tenant: str  # the inbox folder's name
    path: Path
    kind: str  # "catalog" | "step"
    # (size, modification time, change time, inode): any write, rename over it or utime moves the
    # change time, which no user-space tool can set back, so a changed content never hides behind it.
    fingerprint: tuple[int, int, int, int]


def scan(uploads_dir: Path) -> list[Upload]:
    """Every file of a known kind in every tenant folder, in a stable order (one stat per file).
    A file that goes while it is looked at is not there; a folder that cannot be read has nothing."""
    found = []
    root = Path(uploads_dir)
    if not root.is_dir():
        return found
    for tenant_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            with os.scandir(tenant_dir) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except OSError:
            continue
        for entry in listed:
            kind = KINDS.get(Path(entry.name).suffix.lower())
            if not kind or entry.name.startswith((".", "~$")):
                continue
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except OSError:
                continue
            fingerprint = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
            found.append(Upload(tenant_dir.name, Path(entry.path), kind, fingerprint))
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def step_names(product) -> list[str]:
    """The names a product's STEP upload may have, in order: the file its catalogue row names, else
    ``<PIM-ID or key>.step``/``.stp`` (a PIM-ID that looks like a path names no file)."""
    if product.step_filename:
        return [product.step_filename]
    stems = [s for s in dict.fromkeys((product.pim_id, product.key)) if not ("/" in s or "\\" in s or s[:1] == ".")]
    return [f"{stem}{suffix}" for stem in stems for suffix in STEP_SUFFIXES]


def step_file_for(tenant_dir: Path, product) -> Path | None:
    """A product's STEP upload in its tenant's inbox, if there is one."""
    return next((tenant_dir / n for n in step_names(product) if (tenant_dir / n).is_file()), None)
