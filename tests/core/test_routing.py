"""The route index finds what FastAPI's walk over every route finds, only faster."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Match, Mount, Route

from omniloop.core.routing import RouteIndex, add_routes


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "",
            "query_string": b"", "headers": []}


def _walk(routes: list[BaseRoute], scope: dict[str, Any]) -> BaseRoute | None:
    """What the router's own procedure chooses: the first full match, else the first
    partial one."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def _example_paths(route: BaseRoute) -> list[str]:
    if isinstance(route, Mount):
        return [route.path + "/app.css", route.path + "/deep/er/file.js"]
    assert isinstance(route, Route)
    filled = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "a1" if m.group(2) != ":path" else "a/b",
                    route.path_format)
    return [filled, filled + "/", filled + "/extra"]


def test_the_index_chooses_as_the_router_does_for_every_route_of_the_app(
        app: FastAPI) -> None:
    index = RouteIndex(app)
    routes = app.router.routes
    assert len(routes) > 200
    checked = 0
    for route in routes:
        for path in _example_paths(route):
            for method in ("GET", "POST", "PATCH", "DELETE"):
                scope = _scope(method, path)
                found = index.find(scope)
                assert (found[0] if found else None) is _walk(routes, scope), (method, path)
                checked += 1
    assert checked > 2_000


def test_the_app_dispatches_through_the_index(app: FastAPI, client: TestClient) -> None:
    assert isinstance(app.router.middleware_stack, RouteIndex)
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/static/no-such-file.css").status_code == 404  # a mount, by the index
    missing = client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong_method = client.delete("/healthz")
    assert wrong_method.status_code == 405


def test_the_openapi_description_holds_the_api_and_no_page() -> None:
    from omniloop.api.router import API_PREFIX, API_ROUTERS
    from omniloop.app import create_app

    paths = create_app().openapi()["paths"]
    expected = {API_PREFIX + route.path for router in API_ROUTERS for route in router.routes
                if isinstance(route, Route) and route.include_in_schema}
    assert set(paths) == expected | {"/healthz"}
    assert "/api/v1/customers/identify" in paths


def test_add_routes_refuses_what_it_cannot_copy_faithfully() -> None:
    app = FastAPI()
    outer, inner = APIRouter(), APIRouter()

    @inner.get("/x")
    def x() -> dict[str, str]:
        return {}

    outer.include_router(inner)
    with pytest.raises(TypeError, match="is not an APIRoute"):
        add_routes(app, outer)

    def needs() -> None:
        return None

    from fastapi import Depends
    guarded = APIRouter(prefix="/g", dependencies=[Depends(needs)])
    with pytest.raises(ValueError, match="router-wide dependencies"):
        add_routes(app, guarded)


def test_add_routes_keeps_each_routes_settings() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/things", tags=["things"])

    @router.post("/{thing_id}", status_code=201, summary="Make a thing", name="make")
    def make(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    add_routes(app, router, "/api")
    index_app = app
    from omniloop.core.routing import index_routes
    index_routes(index_app)
    with TestClient(app) as client:
        answer = client.post("/api/things/t1")
    assert (answer.status_code, answer.json()) == (201, {"id": "t1"})
    operation = app.openapi()["paths"]["/api/things/{thing_id}"]["post"]
    assert (operation["summary"], operation["tags"]) == ("Make a thing", ["things"])
    assert app.url_path_for("make", thing_id="t2") == "/api/things/t2"
