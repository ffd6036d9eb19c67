"""The busiest API calls, handed to their route functions without Starlette's and FastAPI's
request machinery.

Every till and every sign-up form calls a handful of endpoints (record an order, identify a
customer, validate and redeem a coupon) thousands of times an hour. Through the full stack
— the session and exception middleware, the router, FastAPI's dependency solving and body
handling — such a call spent ~150–180 µs before its route function began, a third of an
identify (docs/benchmarks.md). The lane does what that machinery does for the usual call
and nothing else: it reads a JSON body of known size, validates it with the route's own
model, finds the API key among those checked a moment ago (`apikeys.cached_actor`), and calls
the very route function FastAPI would call, whose answer or error (through the app's own
exception handlers) is sent as is.

Anything unusual goes the full way, with the body it read handed on: an unknown or
uncached key, a body that does not validate (so its 422 is FastAPI's, word for word), no
`Content-Length`, another content type, a body over `MAX_BODY`. The routes stay registered
and documented as they are; the lane is installed inside the locale middleware, so the
request's language is chosen as for any other call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omniloop.core.errors_http import handled_error
from omniloop.tenancy.apikeys import cached_actor

# Larger bodies (a batch of a thousand events is about 300 KB) go the full way.
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Lane:
    """A route function called as `endpoint(body=…, actor=…, request=…, **headers)`.

    `headers` maps the function's keyword to the (lower-case) header it reads; a header
    missing from the request is passed as None, as FastAPI passes an optional header.
    """

    endpoint: Callable[..., Awaitable[Response]]
    body: type[BaseModel]
    headers: Mapping[str, bytes] = field(default_factory=dict)


class FastLane:
    """ASGI middleware serving `lanes`, by (method, path), as the module describes."""

    def __init__(self, app: ASGIApp, lanes: Mapping[tuple[str, str], Lane]) -> None:
        self.app = app
        self.lanes = dict(lanes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = (self.lanes.get((scope["method"], scope["path"]))
                if scope["type"] == "http" else None)
        if lane is None:
            await self.app(scope, receive, send)
            return
        length = authorization = content_type = None
        wanted: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            name = name.lower()
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            else:
                wanted[name] = value
        try:
            size = int(length) if length is not None else -1
        except ValueError:
            size = -1
        if not 0 <= size <= MAX_BODY or content_type is None or \
                not content_type.startswith(b"application/json"):
            await self.app(scope, receive, send)
            return
        raw, replay, complete = await _read_body(receive)
        if not complete:
            await self.app(scope, replay, send)
            return
        actor = None
        if authorization is not None and authorization[:7].lower() == b"bearer ":
            client = scope.get("client")
            actor = cached_actor(authorization[7:].decode("latin-1").strip(),
                                 client[0] if client else None)
        if actor is None:
            await self.app(scope, replay, send)
            return
        try:
            body = lane.body.model_validate_json(raw)
        except ValidationError:
            await self.app(scope, replay, send)
            return
        request = Request(scope, replay)
        headers: dict[str, Any] = {}
        for keyword, header in lane.headers.items():
            value = wanted.get(header)
            headers[keyword] = value.decode("latin-1") if value is not None else None
        try:
            response = await lane.endpoint(body=body, actor=actor, request=request, **headers)
        except Exception as error:  # the app's own handlers answer, as for any route
            response = handled_error(scope, request, error)
        await response(scope, replay, send)


async def _read_body(receive: Receive) -> tuple[bytes, Receive, bool]:
    """The body, a `receive` that hands on what was read to whoever reads next, and whether
    the body is complete (not when the client hung up half-way)."""
    chunks: list[bytes] = []
    first: Message | None = None
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: the app will see it
            first = message
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return first or {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return raw, replay, first is None
