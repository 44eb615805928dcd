"""Media files as the API hands them out: one checked path, and ZIPs streamed as they are written."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import HTTPException

from automat_pipeline.db.models import MediaAsset


def media_path(media_dir: Path | str, m: MediaAsset) -> Path:
    """The media file of a completed render, which must lie in the media folder and exist."""
    root = Path(media_dir).resolve()
    path = Path(m.path or "").resolve()
    if m.status != "completed" or root not in path.parents or not path.is_file():
        raise HTTPException(404, f"media asset {m.id} has no file")
    return path


class _Chunks:
    """A write-only file for ZipFile whose bytes are handed out as they are written."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(files: list[tuple[str, Path | str]]) -> Iterator[bytes]:
    """A ZIP of ``(name, file or text)``, streamed: renders are compressed already, so stored."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for name, source in files:
            if isinstance(source, str):
                archive.writestr(name, source)
                yield sink.take()
                continue
            with archive.open(name, "w") as entry, source.open("rb") as data:
                while chunk := data.read(1 << 20):
                    entry.write(chunk)
                    yield sink.take()
    yield sink.take()
