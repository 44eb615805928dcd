"""The upload inbox: ``<uploads>/<tenant>/<file>``; workbooks and STEP files, never moved or deleted."""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from automat_pipeline.errors import AutomatError

KINDS = {".xlsx": "catalog", ".xls": "catalog", ".step": "step", ".stp": "step"}
STEP_SUFFIXES = (".step", ".stp", ".STEP", ".STP")
TEMPORARY = (".", "~$")  # skipped: partial uploads (the API writes dot files), editors' lock files
NOT_ON_WINDOWS = str.maketrans(dict.fromkeys('<>:"|?*', "_"))


@dataclass(frozen=True)
class Upload:
    tenant: str  # the inbox folder's name
    path: Path
    kind: str | None  # "catalog" | "step"; None: a file the pipeline does not take
    # (size, modification time, change time, inode): any write, rename over it or utime moves the
    # change time, which no user-space tool can set back, so a changed content never hides behind it.
    fingerprint: tuple[int, int, int, int]
    symlink: bool = False  # never read through: it may point at another tenant's files

    @property
    def name(self) -> str:
        """The file's name as text (see ``shown_name``)."""
        return shown_name(self.path)

    def refusal(self) -> AutomatError | None:
        """Why the pipeline cannot take this file, recorded with it instead of a run."""
        name = self.name
        if self.symlink:
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
        if self.symlink:
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
    """Every file in every tenant folder (symbolic links too, to be refused) but those with the names
    of temporary files, in a stable order (one stat per file, never through a link). A file that goes
    while it is looked at is not there; a folder that cannot be read has nothing."""
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
            if entry.name.startswith(TEMPORARY):
                continue
            try:
                symlink = entry.is_symlink()
                if not (symlink or entry.is_file()):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            fingerprint = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
            kind = KINDS.get(Path(entry.name).suffix.lower())
            found.append(Upload(tenant_dir.name, Path(entry.path), kind, fingerprint, symlink))
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
    """A product's STEP upload in its tenant's inbox, if there is one: a regular file (a symbolic link
    may point at another tenant's files)."""
    paths = (tenant_dir / name for name in step_names(product))
    return next((path for path in paths if path.is_file() and not path.is_symlink()), None)
