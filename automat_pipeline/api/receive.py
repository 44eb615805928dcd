"""Files posted as multipart/form-data, streamed to disk as they arrive: never whole into memory or a
temporary folder, and only once the route knows the caller may post them (uploads, templates)."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from automat_pipeline.inbox import file_name


def file_body(description: str) -> dict:
    """The OpenAPI request body of a route that receives one file as the ``file`` part (the route
    reads the body itself, so FastAPI cannot describe it)."""
    file = {"type": "string", "format": "binary", "description": description}
    schema = {"type": "object", "required": ["file"], "properties": {"file": file}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


class ReceivedFile:
    """The ``file`` part of a multipart body, written as it streams to a partial file of its own in
    ``folder`` (a dot file, which the upload sensor ignores), for the route to move into place whole.
    ``given``: the file name as sent, without folders; ``name``: its name in the inbox (``file_name``)."""

    def __init__(self, folder: Path):
        self.folder, self.given, self.name, self.partial, self.out = folder, None, None, None, None
        self.size, self.digest, self.head, self.done = 0, hashlib.sha256(), b"", False
        self._field, self._value, self._headers = b"", b"", {}

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: setattr(self, "_field", self._field + data[start:end]),
            "on_header_value": lambda data, start, end: setattr(self, "_value", self._value + data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        if self.done or self.out or options.get(b"name") != b"file" or b"filename" not in options:
            return
        self.given = options[b"filename"].decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
        self.name = file_name(
            self.given.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
        )  # HTML's escapes
        self.partial = self.folder / f".{self.name}.{secrets.token_hex(8)}.part"
        self.out = self.partial.open("wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.out is not None:
            chunk = data[start:end]
            if len(self.head) < 64:
                self.head += chunk[: 64 - len(self.head)]
            self.out.write(chunk)
            self.digest.update(chunk)
            self.size += len(chunk)

    def _part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out, self.done = None, True

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)


def boundary(request: Request) -> bytes:
    """The multipart boundary of the request; 422 for a body that is not multipart/form-data."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise HTTPException(422, "send the file as multipart/form-data, in a part named file")
    return options[b"boundary"]


async def receive(request: Request, received: ReceivedFile, parts_boundary: bytes) -> None:
    """Stream the body into ``received`` (the caller discards it when it does not keep it); 422 for a
    body without a complete part named file."""
    parser = MultipartParser(parts_boundary, received.callbacks())
    try:
        async for chunk in request.stream():
            await run_in_threadpool(parser.write, chunk)
        parser.finalize()
    except MultipartParseError as error:
        raise HTTPException(422, f"the multipart body cannot be read: {error}") from error
    if not received.done:
        raise HTTPException(422, "the body has no complete part named file with a filename")
