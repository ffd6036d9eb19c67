"""The API fast lane: the usual call reaches the route function directly, anything unusual
goes the full way with its body intact, and both answer the same."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from omniloop.api import fastlane
from omniloop.api.fastlane import FastLane, Lane
from omniloop.api.router import API_LANES, API_PREFIX
from omniloop.core.db import Session
from omniloop.customers.schemas import IdentifyIn
from omniloop.tenancy import apikeys
from omniloop.tenancy.models import Tenant
from tests.tenancy.factories import bearer, make_api_key, make_tenant

PATH = "/api/v1/customers/identify"
BODY = json.dumps({"identities": [{"kind": "phone", "value": "0912345678"}]}).encode()


class _Stack:
    """What the full way saw: the bodies it read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await Response(b"full", status_code=299)(scope, receive, send)


async def _endpoint(*, body: IdentifyIn, actor: Any, request: Request,
                    key: str | None) -> Response:
    return JSONResponse({"phone": body.identities[0].value, "actor": actor,
                         "key": key, "locale": request.scope.get("state")})


async def _failing(**_: Any) -> Response:
    raise LookupError("to the handlers")


def _call(lane: FastLane, *, body: bytes = BODY, headers: dict[str, str] | None = None,
          chunks: int = 1, path: str = PATH) -> tuple[int, bytes]:
    sent = {"authorization": "Bearer olk_good", "content-type": "application/json",
            "content-length": str(len(body)), **(headers or {})}
    scope: Scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
                    "headers": [(k.encode(), v.encode()) for k, v in sent.items() if v],
                    "client": ("127.0.0.1", 1), "app": _App()}
    size = max(1, -(-len(body) // chunks))
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
                for n, part in enumerate(parts)]
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    asyncio.run(lane(scope, receive, send))
    return answer["status"], answer["body"]


class _App:
    exception_handlers = {LookupError: lambda _request, exc: JSONResponse(
        {"handled": str(exc)}, status_code=418)}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> _Stack:
    monkeypatch.setattr(fastlane, "cached_actor",
                        lambda secret, ip: "actor" if secret == "olk_good" else None)
    return _Stack()


def _lane(stack: _Stack, endpoint: Any = _endpoint) -> FastLane:
    return FastLane(stack, {("POST", PATH): Lane(endpoint, IdentifyIn,
                                                 headers={"key": b"idempotency-key"})})


def test_the_usual_call_reaches_the_route_function(stack: _Stack) -> None:
    status, body = _call(_lane(stack), headers={"Idempotency-Key": "k1"}, chunks=3)
    assert status == 200
    assert json.loads(body) == {"phone": "0912345678", "actor": "actor", "key": "k1",
                                "locale": None}
    assert stack.bodies == []


@pytest.mark.parametrize("unusual", [
    {"headers": {"authorization": "Bearer olk_unknown"}},
    {"headers": {"authorization": ""}},
    {"headers": {"content-type": "text/plain"}},
    {"headers": {"content-length": ""}},
    {"body": b'{"identities": "not a list"}'},
    {"body": b"{not json"},
    {"body": b" " * (fastlane.MAX_BODY + 1)},
], ids=["uncached key", "no key", "not json", "no length", "invalid", "malformed", "too big"])
def test_anything_unusual_goes_the_full_way_with_its_body(stack: _Stack,
                                                          unusual: dict[str, Any]) -> None:
    body = unusual.get("body", BODY)
    assert _call(_lane(stack), body=body, headers=unusual.get("headers"), chunks=2) == (
        299, b"full")
    if len(body) <= fastlane.MAX_BODY:
        assert stack.bodies == [body]


def test_other_paths_are_not_touched(stack: _Stack) -> None:
    assert _call(_lane(stack), path="/api/v1/other") == (299, b"full")


def test_errors_are_answered_by_the_apps_handlers(stack: _Stack) -> None:
    assert _call(_lane(stack, _failing)) == (418, b'{"handled":"to the handlers"}')


# --- the real app ------------------------------------------------------------------------


@pytest.fixture
def key(session: Session) -> str:
    tenant: Tenant = make_tenant(session, slug="lanes")
    return make_api_key(session, tenant, scopes=["admin"])


def test_the_app_answers_the_same_either_way(client: TestClient, key: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []
    real = apikeys.cached_actor

    def cached(secret: str, ip: str | None) -> Any:
        actor = real(secret, ip)
        taken.append("lane" if actor is not None else "full")
        return actor

    monkeypatch.setattr(fastlane, "cached_actor", cached)
    answers = []
    for phone in ("0912000001", "0912000002"):
        response = client.post(PATH, headers=bearer(key), json={
            "identities": [{"kind": "phone", "value": phone}], "traits": {"name": "王"}})
        assert response.status_code == 200, response.text
        answer = response.json()
        answers.append({**answer, "customer": {
            name: value for name, value in answer["customer"].items()
            if name not in ("id", "created_at", "updated_at", "identities")}})
    assert taken == ["full", "lane"]  # the first call checked the key, the second remembered it
    assert answers[0] == answers[1]
    # A body that does not validate is FastAPI's 422, word for word, however the key is known.
    refused = client.post(PATH, headers={**bearer(key), "Accept-Language": "en"},
                          json={"identities": "nope"})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "validation_error"
    # A domain error from the route function: the app's handler, in the caller's language.
    bad = client.post(PATH, headers={**bearer(key), "Accept-Language": "en"},
                      json={"identities": [{"kind": "phone", "value": "12"}]})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_identity"
    assert taken[-1] == "lane"


def test_every_lane_is_a_documented_route(client: TestClient) -> None:
    paths = client.get(f"{API_PREFIX}/openapi.json").json()["paths"]
    for method, path in API_LANES:
        assert method.lower() in (paths.get(path) or paths[path.removeprefix(API_PREFIX)])
