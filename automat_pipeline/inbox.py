"""The upload inbox: ``<uploads>/<tenant>/<file>``; workbooks and STEP files, never moved or deleted."""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from automat_pipeline.errors import AutomatError

KINDS = {".xlsx": "catalog", ".xls": "catalog", ".step": "step", ".stp": "step"}
TEMPORARY = (".", "~$")  # skipped: partial uploads (the API writes dot files), editors' lock files
NOT_ON_WINDOWS = str.maketrans(dict.fromkeys('<>:"|?*', "_"))


@dataclass(frozen=True)
class Upload:
    tenant: str
    path: Path
    kind: str | None  # "catalog" | "step"; None: a file the pipeline does not take
    mtime_ns: int

    def refusal(self) -> AutomatError | None:
        """Why the pipeline cannot take this file, recorded with it instead of a run."""
        name = shown_name(self.path)
        if self.path.is_symlink():  # never read through: it may point at another tenant's files
            return AutomatError("not_a_file", f"{name!r} is a symbolic link; put the file itself into the inbox")
        if name != self.path.name:
            return AutomatError(
                "invalid_file_name", f"the name {name!r} is not UTF-8 text (another system's encoding); rename it"
            )
        if self.kind is None:
            return AutomatError(
                "unsupported_file", f"{name!r} is neither an .xlsx product list nor a STEP file (.stp, .step)"
            )
        if self.kind == "step" and (readable := file_name(name)) != name:
            return AutomatError(
                "invalid_file_name",
                f"no product list can name {name!r} (a cell naming it is read as {readable!r}); rename it {readable!r}",
            )
        return None

    def version(self) -> str:
        """The sha256 of the file; of a symbolic link, of where it points."""
        if self.path.is_symlink():
            return hashlib.sha256(os.readlink(self.path).encode("utf-8", "surrogateescape")).hexdigest()
        return sha256(self.path)


def shown_name(path: Path) -> str:
    """A file's name as text: bytes that are no UTF-8 (a name from another system's encoding) as U+FFFD,
    which a database and a JSON answer can hold."""
    return os.fsencode(Path(path).name).decode("utf-8", "replace")


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
    """Every file in every tenant folder (symbolic links too, to be refused), but those with the
    names of temporary files, in a stable order."""
    found = []
    root = Path(uploads_dir)
    if not root.is_dir():
        return found
    for tenant_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(tenant_dir.iterdir()):
            if path.name.startswith(TEMPORARY) or not (path.is_file() or path.is_symlink()):
                continue
            found.append(Upload(tenant_dir.name, path, KINDS.get(path.suffix.lower()), path.lstat().st_mtime_ns))
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def step_file_for(tenant_dir: Path, product) -> Path | None:
    """A product's STEP upload: the file its catalogue row names, else ``<PIM-ID or key>.step``/``.stp``;
    a regular file (a symbolic link may point at another tenant's files)."""
    if product.step_filename:
        path = tenant_dir / product.step_filename
        return path if path.is_file() and not path.is_symlink() else None
    for stem in dict.fromkeys((product.pim_id, product.key)):
        if "/" in stem or "\\" in stem or stem.startswith("."):  # a PIM-ID is no path
            continue
        for suffix in (".step", ".stp", ".STEP", ".STP"):
            path = tenant_dir / f"{stem}{suffix}"
            if path.is_file() and not path.is_symlink():
                return path
    return None
