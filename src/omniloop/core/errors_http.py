"""Renders every error as `{"error": {"code", "message"}}` in the request's language.

API paths always get JSON. Pages get an HTML error page (see `omniloop.web`), registered by
the web package through `set_page_error_renderer`, so core does not depend on templates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from omniloop.core.errors import (
    N_,
    InvalidJson,
    NotFound,
    OmniloopError,
    UnknownField,
    ValidationFailed,
)

log = logging.getLogger("omniloop.errors")

PageErrorRenderer = Callable[[Request, OmniloopError], Response | None]
_page_renderer: PageErrorRenderer | None = None


def set_page_error_renderer(renderer: PageErrorRenderer) -> None:
    global _page_renderer
    _page_renderer = renderer


class MethodNotAllowed(OmniloopError):
    code = "method_not_allowed"
    status = 405
    message = N_("This method is not allowed here.")


class DatabaseBusy(OmniloopError):
    code = "database_busy"
    status = 503
    message = N_("The database is busy with another change (an import, perhaps). "
                 "Try again in a moment.")


class InternalError(OmniloopError):
    code = "internal_error"
    status = 500
    message = N_("Something went wrong on our side. The error has been logged.")


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return (path.startswith("/api/") or path.startswith("/webhooks/")
            or "application/json" in request.headers.get("accept", "")
            or _page_renderer is None)


def error_response(request: Request, error: OmniloopError,
                   details: list[dict[str, Any]] | None = None) -> Response:
    response = _error_response(request, error, details)
    # Errors that know when to come back (rate limits) say so in the standard header.
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    return response


def _error_response(request: Request, error: OmniloopError,
                    details: list[dict[str, Any]] | None) -> Response:
    if not _wants_json(request) and _page_renderer is not None:
        page = _page_renderer(request, error)
        if page is not None:
            return page
    body = error.render()
    if details:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=error.status)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "[key]")]
    return ".".join(parts) or "body"


def validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            return error_response(request, InvalidJson())
    details = [{"field": _field_path(tuple(err.get("loc", ()))), "type": err.get("type"),
                "message": str(err.get("msg", ""))} for err in errors]
    unknown = [d["field"] for d in details if d["type"] == "extra_forbidden"]
    if unknown:
        return error_response(request, UnknownField(field=", ".join(unknown)), details)
    first = details[0]["field"] if details else "body"
    return error_response(request, ValidationFailed(N_("Invalid value for '{field}'."),
                                                    field=first), details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OmniloopError)
    def _domain(request: Request, exc: OmniloopError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError) -> Response:
        return validation_error(request, exc)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(request, NotFound())
        if exc.status_code == 405:
            return error_response(request, MethodNotAllowed())
        response = JSONResponse({"error": {"code": f"http_{exc.status_code}",
                                           "message": str(exc.detail)}},
                                status_code=exc.status_code)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(PoolTimeoutError)
    def _pool_timeout(request: Request, exc: PoolTimeoutError) -> Response:
        response = error_response(request, DatabaseBusy())
        response.headers["Retry-After"] = "2"
        return response

    @app.exception_handler(OperationalError)
    def _database(request: Request, exc: OperationalError) -> Response:
        # SQLite has one writer at a time; a writer that waited its busy timeout out gets
        # "database is locked". That is a moment's congestion, not a bug: say so, and when
        # to retry, instead of a 500.
        if "database is locked" in str(exc.orig):
            response = error_response(request, DatabaseBusy())
            response.headers["Retry-After"] = "2"
            return response
        log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(request, InternalError())

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path,
                  exc_info=exc)
        return error_response(request, InternalError())


def handled_error(scope: Scope, request: Request, error: Exception) -> Response:
    """What the app's exception handlers answer for `error` (looked up by its classes, as
    Starlette does), for fast paths that call route functions outside the app's exception
    middleware; re-raised to the server error middleware when none is registered."""
    handlers = scope["app"].exception_handlers
    for kind in type(error).__mro__:
        if kind in handlers and kind is not Exception:
            answer = handlers[kind](request, error)
            assert isinstance(answer, Response)  # omniloop's handlers are synchronous
            return answer
    raise error
