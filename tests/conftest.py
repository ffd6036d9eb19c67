"""Test set-up: a real database migrated by Alembic, emptied after every test.

SQLite by default (a fresh file per run); PostgreSQL when OMNILOOP_TEST_DATABASE_URL is set.
Tests commit for real, exactly as requests do, and every table is emptied afterwards, so
each test starts from an empty database and concurrency tests can use real transactions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="omniloop-tests-"))
os.environ["OMNILOOP_DATA_DIR"] = str(_TMP)
os.environ["OMNILOOP_SECRET_KEY"] = "test-secret-key-not-for-production"
os.environ["OMNILOOP_BASE_URL"] = "http://testserver"
TEST_DATABASE_URL = os.environ.get("OMNILOOP_TEST_DATABASE_URL") or f"sqlite:///{_TMP}/test.db"
os.environ["OMNILOOP_DATABASE_URL"] = TEST_DATABASE_URL

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Engine, event, text  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from omniloop.core.db import Database, Session, make_engine, set_database  # noqa: E402
from omniloop.core.migrate import upgrade  # noqa: E402
from omniloop.models import Base  # noqa: E402


def _reset_schema(db: Database) -> None:
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))


_STARTS_WRITING = ("INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT")


def _arranging_engine(url: str) -> Engine:
    """The `session` fixture's engine on SQLite: reads like the app's read units of work, and
    its factories may write without flaking.

    The fixture's session is a deferred (read) transaction, so holding it open never blocks
    the app. But SQLite refuses at once to let a read transaction write when anyone (a
    request, the loops recorder's thread) committed since it began: its snapshot is stale.
    So at its first write the fixture's transaction starts again as a write transaction. The
    app's own read engine refuses every write (query_only); this one lifts that.
    """
    engine = make_engine(url, for_writes=False)

    def may_write(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA query_only=OFF")

    def before_execute(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if conn.info.get("writing"):
            return
        if statement.lstrip()[:9].upper().startswith(_STARTS_WRITING):
            dbapi_connection = conn.connection.dbapi_connection
            if dbapi_connection.in_transaction:
                dbapi_connection.execute("COMMIT")  # nothing written yet: only ends the snapshot
            dbapi_connection.execute("BEGIN IMMEDIATE")
            conn.info["writing"] = True

    def transaction_ended(conn) -> None:  # type: ignore[no-untyped-def]
        conn.info.pop("writing", None)

    event.listen(engine, "connect", may_write)  # after make_engine's own (query_only=ON)
    event.listen(engine, "before_cursor_execute", before_execute)
    event.listen(engine, "commit", transaction_ended)
    event.listen(engine, "rollback", transaction_ended)
    return engine


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    db = Database(TEST_DATABASE_URL)
    _reset_schema(db)
    upgrade(db.engine)
    set_database(db)
    yield db
    set_database(None)


@pytest.fixture(autouse=True)
def _empty_tables(database: Database) -> Iterator[None]:
    yield
    # DELETE, children first, on both databases: on PostgreSQL a TRUNCATE of the 53 tables
    # took ~87 ms (new files for every table) against ~9 ms, after each of ~930 tests.
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(scope="session")
def _arranging(database: Database) -> Iterator[sessionmaker[Session]]:
    if database.read_engine is database.engine:  # PostgreSQL
        yield database.read_sessionmaker
        return
    engine = _arranging_engine(database.url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def session(_arranging: sessionmaker[Session]) -> Iterator[Session]:
    """A session for arranging and checking data.

    Deferred (read) transactions on SQLite, so holding it open never blocks the app's writers.
    Factories commit; call `session.rollback()` before re-reading what a request changed.
    """
    with _arranging() as s:
        yield s


@pytest.fixture(scope="session")
def app(database: Database):  # type: ignore[no-untyped-def]
    from omniloop.app import create_app

    return create_app()


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c
