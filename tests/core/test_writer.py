"""SQLite's writer thread: units of work that queue together share one commit, yet each
keeps its own session, its own errors and its own rollback, and nobody hears of success
before the commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from omniloop.core.db import Database, Session, after_commit
from omniloop.core.i18n import current_locale
from omniloop.core.writer import Writer


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/writer.db")
    with database.unit_of_work() as session:
        session.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    yield database
    database.dispose()


def _writer(db: Database) -> Writer:
    assert db.writer is not None
    return db.writer


def _committed(db: Database) -> list[int]:
    """What another connection sees: only committed rows."""
    path = db.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT x FROM t ORDER BY x")]


def _insert(x: int) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        session.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": x})
        return x
    return work


async def _queued_behind_a_gate(db: Database, works: list[Callable[[Session], Any]]
                                ) -> list[Any]:
    """Run `works` as one batch: a first unit of work holds the writer until all are queued."""
    gate, inside = threading.Event(), threading.Event()

    def hold(_session: Session) -> None:
        inside.set()
        gate.wait(5)

    first = asyncio.ensure_future(_writer(db).run(hold))
    await asyncio.get_running_loop().run_in_executor(None, inside.wait, 5)
    rest = [asyncio.ensure_future(_writer(db).run(work)) for work in works]
    await asyncio.sleep(0.01)  # all of them queued
    gate.set()
    await first
    return await asyncio.gather(*rest, return_exceptions=True)


def test_units_of_work_that_queue_together_share_one_commit(db: Database) -> None:
    before = _writer(db).batches
    results = asyncio.run(_queued_behind_a_gate(db, [_insert(x) for x in range(1, 21)]))
    assert results == list(range(1, 21))
    assert _committed(db) == list(range(1, 21))
    assert _writer(db).batches - before == 2  # the gate's, then the twenty together


def test_a_failing_unit_of_work_takes_back_its_own_writes_only(db: Database) -> None:
    def half_then_fail(session: Session) -> None:
        session.execute(text("INSERT INTO t (x) VALUES (100)"))
        raise LookupError("refused half-way")

    results = asyncio.run(_queued_behind_a_gate(db, [_insert(1), half_then_fail, _insert(2),
                                                      _insert(1)]))
    assert (results[0], results[2]) == (1, 2)
    assert isinstance(results[1], LookupError)
    assert "UNIQUE" in str(results[3])  # a constraint error in a batch is its own too
    assert _committed(db) == [1, 2]


def test_a_lone_unit_of_work_that_fails_leaves_nothing(db: Database) -> None:
    def half_then_fail(session: Session) -> None:
        session.execute(text("INSERT INTO t (x) VALUES (7)"))
        raise LookupError("no")

    with pytest.raises(LookupError):
        asyncio.run(_writer(db).run(half_then_fail))
    assert _committed(db) == []
    assert asyncio.run(_writer(db).run(_insert(8))) == 8
    assert _committed(db) == [8]


def test_each_unit_of_work_starts_with_an_empty_session(db: Database) -> None:
    from omniloop.tenancy.models import Tenant

    seen: list[int] = []

    def load(session: Session) -> None:
        seen.append(len(session.identity_map))
        session.add(Tenant(id=f"T{len(seen)}", slug=f"t{len(seen)}", name="x"))
        session.flush()

    def fail(session: Session) -> None:
        seen.append(len(session.identity_map))
        session.add(Tenant(id="T1", slug="dup", name="x"))  # the first one's id: refused
        session.flush()

    with db.engine.begin() as connection:
        Tenant.__table__.create(connection)  # type: ignore[attr-defined]
    results = asyncio.run(_queued_behind_a_gate(db, [load, fail, load, load]))
    # The failed flush rolled the transaction back: the first ran again, after it.
    assert results == [None, results[1], None, None]
    assert "UNIQUE" in str(results[1])
    assert set(seen) == {0}  # nothing of an earlier unit of work, failed or not
    with db.unit_of_work(write=False) as session:
        assert session.scalar(text("SELECT count(*) FROM tenants")) == 3


def test_success_is_answered_and_hooks_run_only_after_the_commit(db: Database) -> None:
    observed: dict[str, Any] = {}

    def work(session: Session) -> None:
        session.execute(text("INSERT INTO t (x) VALUES (5)"))
        after_commit(session, lambda: observed.setdefault("hook", _committed(db)))
        observed["inside"] = _committed(db)

    def failing(session: Session) -> None:
        after_commit(session, lambda: observed.setdefault("failed hook", True))
        raise LookupError("no")

    results = asyncio.run(_queued_behind_a_gate(db, [work, failing]))
    assert results[0] is None
    assert isinstance(results[1], LookupError)
    assert observed == {"inside": [], "hook": [5]}
    assert _committed(db) == [5]


def test_the_callers_context_goes_along(db: Database) -> None:
    def language(_session: Session) -> str:
        return current_locale.get()

    async def call() -> str:
        current_locale.set("en")
        return await _writer(db).run(language)

    assert asyncio.run(call()) == "en"


def test_a_failed_commit_fails_every_unit_of_work_of_the_batch(db: Database) -> None:
    def deferred_violation(session: Session) -> None:
        # A deferred foreign key fails at COMMIT, not at the INSERT.
        session.execute(text("INSERT INTO child (parent) VALUES (42)"))

    with db.unit_of_work() as session:
        session.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        session.execute(text("CREATE TABLE child (parent INTEGER REFERENCES parent (id) "
                             "DEFERRABLE INITIALLY DEFERRED)"))
    results = asyncio.run(_queued_behind_a_gate(db, [_insert(1), deferred_violation]))
    assert all("FOREIGN KEY" in str(result) for result in results)
    assert _committed(db) == []
    assert asyncio.run(_writer(db).run(_insert(2))) == 2  # and the writer goes on


def test_a_unit_of_work_that_rolls_back_everything_fails_alone(db: Database) -> None:
    def rolls_back(session: Session) -> None:
        session.execute(text("INSERT INTO t (x) VALUES (3)"))
        session.rollback()  # not for units of work: the others run again

    results = asyncio.run(_queued_behind_a_gate(db, [_insert(1), rolls_back, _insert(2)]))
    assert results[0] == 1
    assert isinstance(results[1], RuntimeError)
    assert results[2] == 2
    assert _committed(db) == [1, 2]


def test_stop_finishes_the_queue_and_a_later_call_starts_again(db: Database) -> None:
    async def many() -> list[int]:
        calls = [asyncio.ensure_future(_writer(db).run(_insert(x))) for x in range(1, 6)]
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, _writer(db).stop)
        return await asyncio.gather(*calls)

    assert asyncio.run(many()) == [1, 2, 3, 4, 5]
    assert asyncio.run(_writer(db).run(_insert(6))) == 6
    assert _committed(db) == [1, 2, 3, 4, 5, 6]


def test_postgresql_has_no_writer_thread() -> None:
    assert Database("postgresql+psycopg://nobody@127.0.0.1:1/none").writer is None
