"""API keys remembered by the process (`apikeys.cached_actor`): answered without the
database, and still refused as soon as they are revoked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.core.errors import ApiKeyRevoked
from omniloop.tenancy import apikeys
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import ApiKey
from tests.tenancy.factories import bearer, fresh, make_api_key, make_tenant


@pytest.fixture
def key_reads(database: Database) -> Iterator[list[str]]:
    """The SQL statements that read the api_keys table, as they are run."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            seen.append(statement)

    engines = {database.engine, database.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    yield seen
    for engine in engines:
        event.remove(engine, "before_cursor_execute", record)


def test_a_key_checked_a_moment_ago_is_answered_from_memory(
        client: TestClient, session: Session, key_reads: list[str]) -> None:
    secret = make_api_key(session, make_tenant(session))
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    assert len(key_reads) == 1
    for _ in range(3):
        assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    assert len(key_reads) == 1  # no further look-up
    assert apikeys.cached_actor(secret) is not None
    assert apikeys.cached_actor(secret + "x") is None
    assert apikeys.cached_actor("not-a-key") is None


def test_revoked_by_this_process_is_refused_at_once(
        client: TestClient, database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    secret = make_api_key(session, tenant)
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    assert apikeys.cached_actor(secret) is not None
    key_id = session.scalars(select(ApiKey.id)).one()
    # As the admin page does it: the service function in a unit of work of its own.
    with database.unit_of_work() as uow:
        apikeys.revoke_api_key(uow, system_actor(tenant.id), key_id)
    assert apikeys.cached_actor(secret) is None
    response = client.get("/api/v1/me", headers=bearer(secret))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_revoked_by_another_process_is_refused_within_the_cache_time(
        client: TestClient, database: Database, session: Session,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(apikeys, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    secret = make_api_key(session, make_tenant(session))
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    # Another server on the same database revokes the key: this process is not told.
    with database.engine.begin() as connection:
        connection.execute(update(ApiKey).values(revoked_at=utcnow()))
    clock[0] += apikeys.KEY_CACHE_SECONDS / 2
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    clock[0] += apikeys.KEY_CACHE_SECONDS
    response = client.get("/api/v1/me", headers=bearer(secret))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_a_check_that_read_the_key_before_a_revocation_does_not_remember_it(
        database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    secret = make_api_key(session, tenant)
    key_id = session.scalars(select(ApiKey.id)).one()

    revoked: list[bool] = []

    def revoke_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The key has just been read unrevoked; the revocation commits before the check ends.
        if revoked or "api_keys" not in statement or not statement.startswith("SELECT"):
            return
        revoked.append(True)
        with database.unit_of_work() as uow:
            apikeys.revoke_api_key(uow, system_actor(tenant.id), key_id)

    event.listen(database.read_engine, "after_cursor_execute", revoke_meanwhile)
    try:
        with database.unit_of_work(write=False) as reading:
            apikeys.authenticate_api_key(reading, secret)  # read before the revocation
    finally:
        event.remove(database.read_engine, "after_cursor_execute", revoke_meanwhile)
    assert revoked
    assert apikeys.cached_actor(secret) is None
    with database.unit_of_work(write=False) as reading, pytest.raises(ApiKeyRevoked):
        apikeys.authenticate_api_key(reading, secret)


def test_use_is_still_recorded_once_a_minute(
        client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = make_api_key(session, make_tenant(session))
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    fresh(session)
    first = session.scalars(select(ApiKey.last_used_at)).one()
    assert first is not None
    later = utcnow() + apikeys.LAST_USED_RESOLUTION + timedelta(seconds=1)
    monkeypatch.setattr(apikeys, "utcnow", lambda: later)
    assert apikeys.cached_actor(secret) is None  # due for recording: checked in the database
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    fresh(session)
    again = session.scalars(select(ApiKey.last_used_at)).one()
    assert again is not None
    assert again > first
