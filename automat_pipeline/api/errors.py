"""Errors, translated to answers in one place: domain errors, database errors, invalid requests.

Routes and the code under them raise the domain's errors (``automat_pipeline.errors``); this module
decides their status: ``NotFound`` 404, ``Conflict`` 409, any other ``AutomatError`` 422. A value
PostgreSQL cannot store is the client's error (422).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from automat_pipeline.errors import AutomatError, Conflict, NotFound

STATUS = {NotFound: 404, Conflict: 409}


def answer(status: int, detail, error_class: str | None = None, headers: dict | None = None) -> JSONResponse:
    content = {"detail": detail} | ({"error_class": error_class} if error_class else {})
    return JSONResponse(status_code=status, content=content, headers=headers)


def domain_error(request: Request, error: AutomatError) -> JSONResponse:
    return answer(STATUS.get(type(error), 422), error.reason, error.error_class)


def unstorable(request: Request, error: DataError) -> JSONResponse:
    """A value PostgreSQL cannot store (a NUL character, a number out of range) is the client's error."""
    return answer(422, f"a value cannot be stored: {error.orig}", "unstorable_value")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AutomatError, domain_error)
    app.add_exception_handler(DataError, unstorable)
