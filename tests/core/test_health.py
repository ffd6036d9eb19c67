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


def test_sqlite_writer_congestion_is_a_503_with_retry_after(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holding SQLite's write lock past the busy timeout: a clear 503."""
    import sqlite3

    from omniloop.core.db import get_database
    from omniloop.core.settings import get_settings
    from tests.tenancy.factories import bearer, make_api_key, make_tenant

    database = get_database()
    if database.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite has a single writer")
    with database.sessionmaker() as session:
        key = make_api_key(session, make_tenant(session))
    monkeypatch.setattr(get_settings(), "sqlite_busy_timeout_ms", 200)
    database.engine.dispose()  # new connections pick up the short timeout
    holder = sqlite3.connect(database.engine.url.database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = client.post("/api/v1/stores", headers=bearer(key) | {"Accept-Language": "en"},
                               json={"code": "A1", "name": "Busy"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        database.engine.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_busy"
    assert response.headers["Retry-After"] == "2"
