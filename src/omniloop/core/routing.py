"""How the app finds a request's route: every route on the app's own router, found by index.

FastAPI (since 0.137) keeps an included router as a nested branch that it walks for every
request, matching each level twice, and both FastAPI and Starlette try the routes one by one
in order. With ~250 API and page routes that was most of the cost of a fast request: a health
check took ~780 µs of CPU in process, ~520 µs of it finding the route (docs/benchmarks.md,
"Finding the route").

Two steps remove it without changing what matches:
* `add_routes` copies a router's routes onto the app as ordinary `APIRoute`s with their full
  paths, the way `include_router` worked before 0.137 (the same public `add_api_route` with
  the route's own settings), so matching is one flat, ordered list.
* `RouteIndex` answers a path from the few routes that can match it: a route's path up to its
  first parameter is fixed text, so only routes filed under a directory of the request's path
  (`/`, `/api/`, `/api/v1/`, `/api/v1/customers/`, …) and those whose whole path is fixed and
  equal to it are tried, in their original order. What none of them matches (404, a redirect
  to the path with or without its trailing slash, a WebSocket) goes to the router's own full
  procedure, so those answers stay FastAPI's, and a route the index should have offered and
  did not would still be found, only slower.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

# The settings of an APIRoute that add_api_route takes back, by the same names.
_ROUTE_SETTINGS = (
    "response_model", "status_code", "tags", "dependencies", "summary", "description",
    "response_description", "responses", "deprecated", "methods", "operation_id",
    "response_model_include", "response_model_exclude", "response_model_by_alias",
    "response_model_exclude_unset", "response_model_exclude_defaults",
    "response_model_exclude_none", "include_in_schema", "response_class", "name",
    "callbacks", "openapi_extra", "generate_unique_id_function",
)


def add_routes(app: FastAPI, router: APIRouter, prefix: str = "",
               include_in_schema: bool = True) -> None:
    """Every route of `router` on the app itself, under `prefix`.

    Routers given here hold routes only (no routers included in them, no router-wide
    dependencies): that is how omniloop's modules declare theirs, and it is checked.
    """
    if router.dependencies:
        raise ValueError(f"router {router.prefix!r} has router-wide dependencies")
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r} in router {router.prefix!r} is not an APIRoute: "
                            "declare it on the app")
        settings: dict[str, Any] = {name: getattr(route, name) for name in _ROUTE_SETTINGS}
        settings["include_in_schema"] = (route.include_in_schema and include_in_schema
                                         and router.include_in_schema)
        app.router.add_api_route(prefix + route.path, route.endpoint, **settings)


def _fixed_part(route: BaseRoute) -> str | None:
    """The text every path this route matches begins with; None if it is not known."""
    if isinstance(route, Mount):
        return route.path + "/"
    if isinstance(route, Route):
        return route.path_format.split("{", 1)[0]
    return None


class RouteIndex:
    """The router's own dispatch with the routes to try looked up instead of walked."""

    def __init__(self, app: FastAPI) -> None:
        self.router = app.router
        self.fallback: ASGIApp = app.router.app
        self.exact: dict[str, list[tuple[int, BaseRoute]]] = defaultdict(list)
        self.filed: dict[str, list[tuple[int, BaseRoute]]] = defaultdict(list)
        self.unfiled: list[tuple[int, BaseRoute]] = []
        for position, route in enumerate(app.router.routes):
            fixed = _fixed_part(route)
            if fixed is None or not fixed.startswith("/"):
                self.unfiled.append((position, route))
            elif isinstance(route, Route) and fixed == route.path_format:
                self.exact[fixed].append((position, route))  # no parameters: this path only
            else:
                self.filed[fixed[: fixed.rindex("/") + 1]].append((position, route))

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that could match `path`, in the order they were added."""
        found = [*self.unfiled, *self.exact.get(path, ())]
        end = path.find("/")
        while end != -1:
            found.extend(self.filed.get(path[: end + 1], ()))
            end = path.find("/", end + 1)
        found.sort(key=lambda filed: filed[0])
        return [route for _, route in found]

    def find(self, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        """The route the router would choose for this HTTP request, and its scope: the first
        to match fully, else the first to match the path but not the method (a 405)."""
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path):]
        chosen: tuple[BaseRoute, Scope] | None = None
        for route in self.candidates(path):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, child_scope
            if match is Match.PARTIAL and chosen is None:
                chosen = (route, child_scope)
        return chosen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.find(scope) if scope["type"] == "http" else None
        if found is None:
            await self.fallback(scope, receive, send)
            return
        route, child_scope = found
        scope.setdefault("router", self.router)
        scope.update(child_scope)
        await route.handle(scope, receive, send)


def index_routes(app: FastAPI) -> None:
    """Dispatch the app's requests through a `RouteIndex` of its routes as they stand now
    (call it once every route is added)."""
    app.router.middleware_stack = RouteIndex(app)
