"""The ASGI application: API, admin and consumer pages, static files, health check."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.middleware.sessions import SessionMiddleware

import omniloop.wiring  # noqa: F401  (connects modules that listen to each other)
from omniloop import __version__
from omniloop.api.fastlane import FastLane
from omniloop.api.router import API_LANES, API_PREFIX, API_ROUTERS
from omniloop.core.db import get_database
from omniloop.core.errors_http import install_error_handlers
from omniloop.core.middleware import LocaleMiddleware
from omniloop.core.routing import add_routes, index_routes
from omniloop.core.settings import get_settings
from omniloop.loops import consumer_pages as loops_pages
from omniloop.web import STATIC_DIR
from omniloop.web.router import WEB_ROUTERS

# Swagger UI 5 (needed for OpenAPI 3.1) as shipped inside the fastapi-offline wheel: served
# from our own origin, so the docs work without internet.
SWAGGER_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"

API_DESCRIPTION = """
The omniloop REST API. Authenticate with an API key: `Authorization: Bearer olk_…`.
Keys are created in the admin (API keys page) or with `omniloop apikey create`, and carry
scopes: `pos` (store counters), `ingest` (events and orders from other systems), `admin`
(everything). A key bound to a store sees only that store.

Errors always have the shape `{"error": {"code": "...", "message": "..."}}`: `code` is
stable for programs, `message` is for people and follows `Accept-Language` (zh-TW, en).
Validation errors add `details`: one `{field, type, message}` per problem.
"""


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="omniloop",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
        # FastAPI's built-in OpenTelemetry looks up the global providers on every request;
        # omniloop configures none, so it is off rather than asked each time.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.resolved_secret_key(),
        session_cookie="omniloop_session",
        max_age=settings.session_idle_seconds,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )
    app.add_middleware(loops_pages.ScanFastPath)  # inside the locale, outside the rest
    app.add_middleware(FastLane, lanes=API_LANES)  # likewise
    app.add_middleware(LocaleMiddleware, default_locale=settings.default_locale)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/api/v1/docs-assets", StaticFiles(directory=SWAGGER_ASSETS), name="docs-assets")
    for router in API_ROUTERS:
        add_routes(app, router, API_PREFIX)
    for router in WEB_ROUTERS:
        add_routes(app, router, include_in_schema=False)

    @app.get("/api/v1/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/v1/openapi.json",
            title="omniloop API",
            swagger_js_url="/api/v1/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/api/v1/docs-assets/swagger-ui.css",
            swagger_favicon_url="/api/v1/docs-assets/favicon.png",
        )

    @app.get("/healthz", tags=["health"], name="check")
    def healthz() -> JSONResponse:
        """Liveness and database reachability, for load balancers and monitors."""
        body: dict[str, Any] = {"status": "ok", "version": __version__, "database": "ok"}
        try:
            with get_database().engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to reach the database is "unavailable"
            body.update(status="unavailable", database="unreachable", detail=type(exc).__name__)
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    index_routes(app)  # last: it files the routes as they stand

    # Everything built so far (routes, templates, models, caches) lives as long as the
    # process: out of the garbage collector's sight, full collections stop walking it on
    # every request burst (the longest /t answers in bench/bench_loops.py: 155 → 58 ms).
    gc.collect()
    gc.freeze()
    return app
