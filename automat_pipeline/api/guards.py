"""Request guards that act before anything parses a body: size limits by path.

A body larger than its limit is refused by its ``Content-Length`` before a byte is read, and while
it streams when it declares none: a JSON body may hold at most ``AUTOMAT_MAX_BODY_KB``, an upload
``AUTOMAT_MAX_UPLOAD_MB``, a template ``AUTOMAT_MAX_TEMPLATE_MB`` (and those routes read the body
only once the caller is known).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from automat_pipeline.settings import Settings


class BodyLimit:
    """ASGI middleware: 413 for a body over its path's limit, declared or streamed."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.default = settings.max_body_kb << 10
        self.files = {"/uploads": settings.max_upload_mb << 20, "/templates": settings.max_template_mb << 20}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.files.get(scope["path"], self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large(limit))
            return message

        await self.app(scope, limited, send)


def too_large(limit: int) -> str:
    return (
        f"the request body is larger than {limit >> 20} MiB"
        if limit >= 1 << 20
        else (f"the request body is larger than {limit >> 10} KiB")
    )


async def _too_large(send: Send, limit: int) -> None:
    body = ('{"detail":"' + too_large(limit) + '","error_class":"too_large"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
