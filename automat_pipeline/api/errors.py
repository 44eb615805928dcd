"""Errors, translated to answers in one place: domain errors, database errors, invalid requests.

Routes and the code under them raise the domain's errors (``automat_pipeline.errors``); this module
decides their status: ``NotFound`` 404, ``Conflict`` 409, any other ``AutomatError`` 422. A value
PostgreSQL cannot store, text that is not valid Unicode, or a name taken meanwhile by a concurrent
request are the client's errors (422, 422, 409), never a 500; a database that does not answer
(stopped, restarting, out of connections) is a 503 with ``Retry-After``, and the next request
after it is back succeeds (the pool reconnects). Every answer is ASCII JSON, and a rejected
request's input is never echoed: an invalid body only names where it is wrong and why.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from automat_pipeline.errors import AutomatError, Conflict, NotFound

STATUS = {NotFound: 404, Conflict: 409}
MAX_MESSAGE = 300  # characters of a validation message: a message may quote the input
RETRY_AFTER_SECONDS = 5  # a restarting PostgreSQL answers again within seconds


class SafeJSONResponse(JSONResponse):
    """JSON in ASCII: a lone surrogate in a text becomes an escape instead of failing the answer."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def answer(status: int, detail, error_class: str | None = None, headers: dict | None = None) -> JSONResponse:
    content = {"detail": detail} | ({"error_class": error_class} if error_class else {})
    return SafeJSONResponse(status_code=status, content=content, headers=headers)


def domain_error(request: Request, error: AutomatError) -> JSONResponse:
    return answer(STATUS.get(type(error), 422), error.reason, error.error_class)


def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return answer(error.status_code, error.detail, headers=getattr(error, "headers", None))


def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """Where the request is invalid and why, without its input (which may be huge, non-finite, or
    not encodable)."""
    problems = [
        {
            "loc": [part if isinstance(part, int) else str(part)[:100] for part in problem["loc"]],
            "msg": str(problem["msg"])[:MAX_MESSAGE],
            "type": problem["type"],
        }
        for problem in error.errors()
    ]
    return answer(422, problems, "invalid_request")


def unstorable(request: Request, error: DataError) -> JSONResponse:
    """A value PostgreSQL cannot store (a NUL character, a number out of range) is the client's error."""
    return answer(422, f"a value cannot be stored: {str(error.orig).splitlines()[0]}", "unstorable_value")


def not_unicode(request: Request, error: UnicodeError) -> JSONResponse:
    return answer(422, "a text is not valid Unicode (a lone surrogate?)", "invalid_text")


def integrity(request: Request, error: IntegrityError) -> JSONResponse:
    """A constraint the database keeps: a unique name taken meanwhile by a concurrent request (what a
    check before the insert missed) is a conflict; a reference to something gone, or a value a check
    refuses, is invalid."""
    if getattr(error.orig, "sqlstate", None) == "23505":  # unique_violation
        return answer(409, "that name is taken (perhaps by a request at the same time)", "conflict")
    return answer(422, "the request refers to something that does not exist or breaks a rule", "invalid_reference")


def database_away(request: Request, error: Exception) -> JSONResponse:
    """The database did not answer (not the client's fault): the same request will do once it is back."""
    return answer(
        503,
        "the database is not answering; try again shortly",
        "database_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(AutomatError, domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(DataError, unstorable)
    app.add_exception_handler(UnicodeError, not_unicode)
    app.add_exception_handler(IntegrityError, integrity)
    for away in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(away, database_away)
