"""One thread for a SQLite database's busiest writes, several units of work per commit.

SQLite lets one transaction write at a time. Before this, every write request took a worker
thread that queued for the one write connection: under load 32 threads woke in turn for
it (a third of a POS redemption's CPU went to those hand-overs and to each transaction's
own BEGIN and COMMIT, docs/benchmarks.md). Here the requests' units of work queue in
order for one thread that holds the connection and runs whatever has queued meanwhile in one
transaction, each unit of work in a savepoint of its own and a session of its own (group
commit, as server databases do it).

What a caller sees does not change: its `work(session)` runs in a session that holds
nothing of anyone else's; an error rolls back its own writes and nothing else and reaches
the caller; the answer is given only after the transaction holding its writes has
committed, so it is as durable as before. A unit of work may run more than once before it
is answered (when another one's failed ORM flush rolls back the whole transaction, the
others run again): it must act through the database only — the outbox, not a message
sent — as every unit of work that commits at the edge does. What runs after a commit
(waking the message worker, forgetting a key) is registered with `core.db.after_commit` and
runs after the real commit, not after the savepoint's release. A unit of work that waited
while the batch ahead of it ran is the only latency added, and under load that wait replaces
a longer one for the lock.

The busiest reads (a till's coupon validation) queue likewise for a `Reader`, which runs
them in one read transaction: a thread of its own in turn, instead of 32 threads taking
turns at the GIL, keeps their answers in the order they came (the validation's p99 fell
from 32 to 11–15 ms at 32 tills; docs/benchmarks.md).

Used for SQLite only (`Database.writer`, `Database.reader`): PostgreSQL has row locks and
many writers, so its units of work keep a transaction each in the threadpool.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.orm import Session

from omniloop.core.db import BATCHED, run_after_commit, take_after_commit

if TYPE_CHECKING:
    from sqlalchemy import Engine

T = TypeVar("T")

# At most this many units of work share a transaction: enough for the 32 tills of the POS
# benchmark to commit together, few enough that a failing commit takes little with it.
BATCH = 64

log = logging.getLogger("omniloop.writer")


@dataclass
class _Work(Generic[T]):
    work: Callable[[Session], T]
    context: contextvars.Context
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    ok: bool = False
    done: bool = False
    outcome: Any = None
    after: list[Callable[[], None]] = field(default_factory=list)  # once committed


class Writer:
    """Runs units of work on `engine`'s write connection from one thread (see the module)."""

    thread_name = "sqlite-writer"

    def __init__(self, engine: Engine, sessionmaker: Callable[..., Session]) -> None:
        self.engine, self._sessionmaker = engine, sessionmaker
        self._queue: deque[_Work[Any]] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0  # transactions committed or rolled back (tests, benchmarks)

    async def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in a unit of work of its own, committed when this returns."""
        loop = asyncio.get_running_loop()
        item = _Work(work, contextvars.copy_context(), loop.create_future(), loop)
        with self._ready:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self.thread_name,
                                                daemon=True)
                self._thread.start()
            self._queue.append(item)
            self._ready.notify()
        return await item.future  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Finish what is queued, then end the thread (the next `run` starts another)."""
        with self._ready:
            self._stopping = True
            thread = self._thread
            self._ready.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._ready:
            self._stopping = False

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            again: list[_Work[Any]] = []
            try:
                again = self._run_batch(batch)
            except BaseException as exc:  # noqa: BLE001 - the connection or the commit failed
                for item in batch:
                    if item.ok or not item.done:
                        item.ok, item.done, item.outcome = False, True, exc
            self.batches += 1
            if again:
                with self._ready:
                    self._queue.extendleft(reversed(again))
            self._answer([item for item in batch if item.done])

    def _run_batch(self, batch: list[_Work[Any]]) -> list[_Work[Any]]:
        """Run `batch`; the units of work to run again in another batch (see below)."""
        # The units of work share a session that joins the batch's transaction without owning
        # it ("rollback_only": nothing it does commits the transaction), emptied between them
        # (a session of one's own, for ~40 µs less than making one each); after an error,
        # whose session may be half-flushed, the next gets a new one. Each unit of work's
        # writes are fenced by a savepoint issued on the driver's cursor (SQLAlchemy's own
        # savepoints cost ~100 µs a unit of work in Python, most of a usual identify). One
        # unit of work alone needs no savepoint: its error rolls back the transaction.
        alone = len(batch) == 1
        with self.engine.connect() as connection:
            transaction = connection.begin()
            cursor = connection.connection.cursor()
            session: Session | None = None
            for index, item in enumerate(batch):
                if session is None:
                    session = self._sessionmaker(bind=connection,
                                                 join_transaction_mode="rollback_only",
                                                 info={BATCHED: True})
                if not alone:
                    cursor.execute("SAVEPOINT omniloop_unit")
                try:
                    item.outcome = item.context.run(item.work, session)
                    session.flush()  # what its commit would have written
                    item.after = take_after_commit(session)
                    item.ok = True
                    session.expunge_all()
                except BaseException as exc:  # noqa: BLE001 - it is the caller's answer
                    item.ok, item.outcome = False, exc
                    session.close()  # its objects go; the transaction stays
                    session = None
                finally:
                    item.done = True
                if not transaction.is_active:
                    # A failed ORM flush (or a session.rollback()) rolled back the whole
                    # transaction, the others' writes with it. This unit of work has its
                    # answer; the others, not yet answered, run again in the next batch.
                    if item.ok:
                        item.ok, item.outcome = False, RuntimeError(
                            "a unit of work rolled back the writer's transaction")
                    if session is not None:
                        session.close()
                    again = batch[:index] + batch[index + 1:]
                    for other in again:
                        other.ok, other.done, other.outcome, other.after = False, False, None, []
                    return again
                if alone:
                    if not item.ok:
                        transaction.rollback()
                        return []
                elif item.ok:
                    cursor.execute("RELEASE SAVEPOINT omniloop_unit")
                else:
                    cursor.execute("ROLLBACK TO SAVEPOINT omniloop_unit")
                    cursor.execute("RELEASE SAVEPOINT omniloop_unit")
            if session is not None:
                session.close()
            try:
                transaction.commit()
            except BaseException:
                # SQLite keeps a transaction whose COMMIT failed (a deferred constraint)
                # open, and SQLAlchemy considers it ended: end it here, or the next batch's
                # BEGIN fails.
                dbapi_connection = connection.connection.dbapi_connection
                if dbapi_connection is not None:
                    dbapi_connection.rollback()
                raise
        for item in batch:
            if item.ok:
                run_after_commit(item.after)
        return []

    @staticmethod
    def _answer(batch: list[_Work[Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Work[Any]]] = {}
        for item in batch:
            by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # the caller's loop has closed: nobody is waiting
                log.debug("a unit of work finished after its event loop closed")


def _settle(items: list[_Work[Any]]) -> None:
    for item in items:
        if item.future.cancelled():
            continue
        if item.ok:
            item.future.set_result(item.outcome)
        else:
            item.future.set_exception(item.outcome)


class Reader(Writer):
    """Runs read-only units of work from one thread, those that queued together in one read
    transaction (one snapshot, taken after all of them arrived). An error is its own unit
    of work's: a read has nothing to take back."""

    thread_name = "sqlite-reader"

    def _run_batch(self, batch: list[_Work[Any]]) -> list[_Work[Any]]:
        with self.engine.connect() as connection:
            connection.begin()
            for item in batch:
                session = self._sessionmaker(bind=connection, join_transaction_mode="rollback_only",
                                             info={BATCHED: True})
                try:
                    item.outcome = item.context.run(item.work, session)
                    item.ok = True
                except BaseException as exc:  # noqa: BLE001 - it is the caller's answer
                    item.ok, item.outcome = False, exc
                finally:
                    item.done = True
                    session.close()
                if not connection.in_transaction():
                    raise RuntimeError("a unit of work rolled back the reader's transaction")
        return []
