"""The domain error: one type for every failure with a class, so every entry point reports it alike.

CLI commands print ``error: <class>: <reason>`` and exit 2; pipeline steps fail with the class in
their metadata (``automat_pipeline.defs.failures``), the upload staying where it was; the API
answers with the class and the reason (``automat_pipeline.api.errors``).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

FULL_BELOW_BYTES = 1 << 20  # a filesystem with less free space counts as full


class AutomatError(Exception):
    """A failure with a stable, machine-readable ``error_class`` and a one-line ``reason``."""

    def __init__(self, error_class: str, reason: str):
        super().__init__(f"{error_class}: {reason}")
        self.error_class = error_class
        self.reason = reason


class NotFound(AutomatError):
    """What the caller named does not exist, or is another tenant's: the API answers 404."""

    def __init__(self, reason: str):
        super().__init__("not_found", reason)


class Conflict(AutomatError):
    """The thing is not in a state that allows this, or the name is taken: the API answers 409."""

    def __init__(self, reason: str):
        super().__init__("conflict", reason)


def disk_full(where: Path | str, error: OSError | None = None) -> AutomatError | None:
    """A ``disk_full`` error if ``error`` says the disk is full (ENOSPC, EDQUOT) or, for a writer that
    failed without saying why (OpenCascade, Blender), if ``where``'s filesystem has (almost) no
    space left; else None."""
    if error is not None and error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    folder = Path(where)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if error is None and shutil.disk_usage(folder).free >= FULL_BELOW_BYTES:
        return None
    return AutomatError("disk_full", f"no space left on the volume of {where}")
