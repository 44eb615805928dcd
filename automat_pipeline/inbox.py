"""The upload inbox: ``<uploads>/<tenant>/<file>``; workbooks and STEP files, never moved or deleted."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

KINDS = {".xlsx": "catalog", ".xls": "catalog", ".step": "step", ".stp": "step"}
TEMPORARY = (".", "~$")  # skipped: partial uploads (the API writes dot files), editors' lock files
NOT_ON_WINDOWS = str.maketrans(dict.fromkeys('<>:"|?*', "_"))


@dataclass(frozen=True)
class Upload:
    tenant: str
    path: Path
    kind: str  # "catalog" | "step"
    mtime_ns: int


def file_name(given: str) -> str:
    """The name a file has in the inbox, from any name a client or a product list gives it.

    The upload API stores files under it and a product list's STEP file column is read through it,
    so both name a file alike: the last part of a path, Unicode kept (NFC), control and format
    characters and every run of blanks as one space, ``_`` for what Windows forbids in a name, no
    leading dot or ``~$`` (names the inbox skips), at most 200 bytes before the extension,
    ``upload`` when nothing else is left.
    """
    base = unicodedata.normalize("NFC", given.replace("\\", "/").rsplit("/", 1)[-1])
    blanked = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in base)
    text = " ".join(blanked.translate(NOT_ON_WINDOWS).split())
    stem, dot, suffix = text.rpartition(".")
    stem, suffix = (stem, "".join(c for c in suffix if c.isascii() and c.isalnum())[:10]) if dot else (suffix, "")
    while stem.startswith(TEMPORARY):
        stem = stem.removeprefix("~$").lstrip(". ")
    stem = stem.encode()[:200].decode("utf-8", "ignore").rstrip(" .") or "upload"
    return f"{stem}.{suffix}" if suffix else stem


def scan(uploads_dir: Path) -> list[Upload]:
    """Every file of a known kind in every tenant folder, in a stable order."""
    found = []
    root = Path(uploads_dir)
    if not root.is_dir():
        return found
    for tenant_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(tenant_dir.iterdir()):
            kind = KINDS.get(path.suffix.lower())
            if kind and path.is_file() and not path.name.startswith(TEMPORARY):
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
