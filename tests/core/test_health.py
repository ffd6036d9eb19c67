from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import omniloop.app
from omniloop.core.db import Database


def test_health_is_503_when_the_database_is_unreachable(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    unreachable = Database("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    monkeypatch.setattr(omniloop.app, "get_database", lambda: unreachable)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
    unreachable.dispose()


def test_health_ok(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
