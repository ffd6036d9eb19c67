"""Engine, sessions and the declarative base.

One session per unit of work; it commits at the edge (the request, the CLI command, the job),
never inside service code. SQLite runs in WAL mode with foreign keys on and a busy timeout so
the embedded default behaves like a server database under concurrent requests.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Engine,
    Enum,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    configure_mappers,
    make_transient_to_detached,
    mapped_column,
    sessionmaker,
)
from sqlalchemy.orm import Session as Session
from sqlalchemy.orm.attributes import manager_of_class
from sqlalchemy.pool import ConnectionPoolEntry

from omniloop.core.clock import utcnow
from omniloop.core.ids import new_id
from omniloop.core.settings import get_settings

if TYPE_CHECKING:
    from omniloop.core.writer import Reader, Writer

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


def id_column() -> Mapped[str]:
    return mapped_column(String(26), primary_key=True, default=new_id)


def string_enum(enum_class: type[enum.Enum], length: int) -> Enum:
    """An enum stored as its values in a plain string column with a CHECK, the same on
    SQLite and PostgreSQL (no native enum type to migrate when a value is added)."""
    return Enum(enum_class, native_enum=False, length=length,
                values_callable=lambda members: [str(m.value) for m in members])


def created_at_column() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


M = TypeVar("M", bound=Base)


def unsaved(cls: type[M], **values: Any) -> M:
    """An object of `cls` holding its columns' Python-side defaults and `values`, added to no
    session. Settings rows (a brand's loyalty or referral programme) are written the first
    time someone saves them; until then a reader gets this, so a GET never writes."""
    defaults: dict[str, Any] = {}
    for column in cls.__table__.columns:
        default = column.default
        if column.key in values or default is None:
            continue
        if default.is_scalar:
            defaults[column.key] = default.arg
        elif default.is_callable:
            defaults[column.key] = default.arg(None)  # SQLAlchemy's wrapper takes a context
    return cls(**defaults, **values)


def get_or_insert(session: Session, cls: type[M], **key: Any) -> M:
    """The row of `cls` with primary key `key`, inserted with its defaults when missing. Two
    transactions inserting it at once end up with the one row (the loser reads the winner's)."""
    identity = tuple(key.values()) if len(key) > 1 else next(iter(key.values()))
    row = session.get(cls, identity)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = unsaved(cls, **key)
            session.add(row)
            session.flush()
    except IntegrityError:
        row = session.get(cls, identity)
        if row is None:
            raise
    return row


@lru_cache(maxsize=1)
def _mappers_ready() -> None:
    # Any ORM query or object configures the mappers first; a process whose first request
    # writes only through Core (an order, a redemption) reaches `stored` before either.
    configure_mappers()


def stored(cls: type[M], values: Mapping[str, Any], *, to_add: bool = True) -> M:
    """The ORM object of a row just written with a Core statement, holding exactly `values`
    as if loaded from the database. Hot paths that write with Core use it instead of
    `cls(**values)`, whose attribute events cost about four times as much and are then
    discarded anyway. `values` must hold every column, as written.

    With `to_add` the object is detached (`session.add` makes it persistent, with nothing to
    flush); without, it is only to be read (an answer, the listeners of an order), never
    added to a session, and spared working out its identity (~8 µs an object); `values` may
    then also hold relationships as loaded (a list of such objects)."""
    _mappers_ready()
    instance: M = manager_of_class(cls).new_instance()
    instance.__dict__.update(values)
    if to_add:
        make_transient_to_detached(instance)
    return instance


# The WAL is copied back into the database file (a checkpoint, with its fsyncs) when it
# reaches this many pages, by the commit that crosses the mark. SQLite's default, 1,000 pages
# (4 MB), is about what one 1,000-event batch writes (some 900 pages, most of them at random
# places in the (customer, time) index), so nearly every batch paid for a checkpoint; at
# 10,000 pages (about 40 MB) a page that several batches change is copied back once.
# Durability is unchanged: that is `synchronous`.
SQLITE_WAL_AUTOCHECKPOINT = 10_000
# The write connection's page cache (KiB; SQLite's default is 2 MB): the one connection that
# all writes go through keeps the index pages that inserts land on instead of reading them
# back for every batch. Read connections, many of them, keep the default.
SQLITE_WRITE_CACHE_KIB = 64 * 1024


def _set_sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    timeout = get_settings().sqlite_busy_timeout_ms
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(timeout)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")
    cursor.close()


def _set_sqlite_write_cache(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_WRITE_CACHE_KIB}")
    cursor.close()


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def _refuse_writes(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # A read transaction that wrote would fail at once with "database is locked" whenever
    # another writer committed since it began (its snapshot is stale; the busy timeout does
    # not apply): a GET that writes works in a quiet test and fails under load. Refused, it
    # fails every time, where a test sees it. Set once per connection: the read engine's
    # connections serve read units of work only.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _disable_pysqlite_transactions(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's implicit one.
    dbapi_connection.isolation_level = None


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL (`sqlite:///path`); None for PostgreSQL and for an
    in-memory database."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    return path if path and path != ":memory:" else None


def make_engine(url: str, *, for_writes: bool = True) -> Engine:
    """An engine for `url`. On SQLite, `for_writes` picks how transactions begin.

    A write transaction begins IMMEDIATE: it takes SQLite's single write lock up front, so a
    second writer waits on busy_timeout instead of failing when it later tries to upgrade a
    stale read snapshot. Read transactions begin DEFERRED and, in WAL mode, never block
    writers; their connections refuse every write (`PRAGMA query_only`). PostgreSQL needs
    neither; both kinds share one engine there.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    path = sqlite_file(url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if for_writes:
        # SQLite has one writer at a time. One pooled write connection makes writers queue
        # here, in order, and start the moment the previous one commits, instead of sleeping
        # in SQLite's busy handler and losing the race again under load. A writer that waits
        # longer than this gets a 503 (see errors_http), not a hang.
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               pool_size=1, max_overflow=0, pool_timeout=30)
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _set_sqlite_pragmas)
    if for_writes:
        event.listen(engine, "connect", _set_sqlite_write_cache)
    else:
        event.listen(engine, "connect", _refuse_writes)
    event.listen(engine, "connect", _disable_pysqlite_transactions)
    event.listen(engine, "begin", _begin_immediate if for_writes else _begin_deferred)
    return engine


# How often a SQLite database's WAL is copied back into its file by a thread of its own
# (`WalCheckpointer`), so that the commit crossing SQLITE_WAL_AUTOCHECKPOINT pages rarely has
# to do it while the write connection, and every writer queued behind it, waits. Often, so
# that each checkpoint is small: at 1,700 redemptions/s, a checkpoint a second doubled the
# writer's CPU for the batch beside it, once a second (redemption p99 45–77 ms); every
# 100 ms, 29 ms (docs/benchmarks.md). On an idle database a checkpoint has nothing to do.
CHECKPOINT_SECONDS = 0.1

log = logging.getLogger("omniloop.db")


class WalCheckpointer:
    """Checkpoints a SQLite database's WAL every CHECKPOINT_SECONDS from its own thread.

    A checkpoint copies the pages the WAL holds back into the database file and `fsync`s it;
    done by a commit (SQLite's automatic checkpoint), it holds the one write connection for
    tens of milliseconds while the cashiers' redemptions queue behind it (paced POS
    redemptions: the longest 45.8–53.7 ms with it in the commits, 12.3–13.2 ms with this
    thread; docs/benchmarks.md). PASSIVE checkpoints never wait for readers or
    writers. The automatic checkpoint stays on as the fallback: should this thread stop, the
    WAL is still bounded. Started by the first write connection of the process, stopped by
    `Database.dispose`.
    """

    def __init__(self, path: str, every: float = CHECKPOINT_SECONDS) -> None:
        self.path, self.every = path, every
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # (after a fork the parent's thread is not alive here: start anew)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every):
                try:
                    if connection is None:
                        # mode=rw: a database file removed meanwhile is not created again.
                        connection = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True,
                                                     check_same_thread=False)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as error:
                    log.warning("WAL checkpoint of %s failed: %s", self.path, error)
                    if connection is not None:
                        connection.close()
                        connection = None
        finally:
            if connection is not None:
                connection.close()


# --- What runs once a transaction has committed ----------------------------------------------

_AFTER_COMMIT = "omniloop.after_commit"
# Marks a session whose commit is a savepoint's release inside a transaction of many units
# of work (`core.writer`): its callbacks run when that transaction commits, not before.
BATCHED = "omniloop.batched"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Call `callback` once the transaction holding the session's writes has committed
    (never if it rolls back). The same callback registered twice runs once. For hints to
    others about committed data — a worker to wake, a cache to forget — that would be
    wrong before the commit: woken early, the worker finds nothing."""
    callbacks: list[Callable[[], None]] = session.info.setdefault(_AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


def take_after_commit(session: Session) -> list[Callable[[], None]]:
    """The session's callbacks, removed from it (`core.writer` runs them later)."""
    return cast(list[Callable[[], None]], session.info.pop(_AFTER_COMMIT, []))


def run_after_commit(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the data is committed; a failed hint is logged
            log.warning("a callback after commit failed", exc_info=True)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if not session.info.get(BATCHED):
        run_after_commit(take_after_commit(session))


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    if not session.info.get(BATCHED):
        session.info.pop(_AFTER_COMMIT, None)


class Database:
    """The engines and session factories of one database URL.

    `sessionmaker` is for units of work that write; `read_sessionmaker` for those that only
    read (GET requests, reports). They differ only on SQLite (see `make_engine`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.read_engine = (make_engine(url, for_writes=False) if url.startswith("sqlite")
                            else self.engine)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = sessionmaker(self.read_engine, expire_on_commit=False)
        path = sqlite_file(url)
        self.checkpointer = WalCheckpointer(str(Path(path).resolve())) if path else None
        # SQLite's busiest writes share transactions in one thread, its busiest reads queue
        # for another (core.writer).
        self.writer: Writer | None = None
        self.reader: Reader | None = None
        if url.startswith("sqlite"):
            from omniloop.core.writer import Reader, Writer

            self.writer = Writer(self.engine, self.sessionmaker)
            self.reader = Reader(self.read_engine, self.read_sessionmaker)
        if self.checkpointer is not None:
            checkpointer = self.checkpointer
            event.listen(self.engine, "connect", lambda *_: checkpointer.start())

    @contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        """A session that commits when the block ends cleanly and rolls back otherwise."""
        factory = self.sessionmaker if write else self.read_sessionmaker
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        if self.writer is not None:
            self.writer.stop()
        if self.reader is not None:
            self.reader.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


_database: Database | None = None


def get_database() -> Database:
    global _database
    if _database is None:
        _database = Database(get_settings().resolved_database_url())
    return _database


def set_database(database: Database | None) -> None:
    """Point the process at another database (tests, the CLI's --database option)."""
    global _database
    if _database is not None and _database is not database:
        _database.dispose()
    _database = database


# --- Writing many rows fast ------------------------------------------------------------------
#
# SQLAlchemy Core's executemany prepares every row's parameters in Python (a dict per row,
# then each column's bind processor); for 1,000 events that cost more than SQLite's own
# work. Here the statement is still compiled by SQLAlchemy for the session's dialect, but
# rows arrive in the driver's form and go to the DBAPI's executemany as they are:
# datetimes through `datetime_to_db`, JSON already serialised (text: SQLite stores it,
# PostgreSQL takes it for a JSON column), enums as their values. Event ingestion and the
# loops recorder write this way.


@dataclass(frozen=True)
class _BulkInsert:
    sql: str
    positional: bool


@lru_cache(maxsize=64)
def _bulk_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _BulkInsert:
    compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
    if compiled.positional and tuple(compiled.positiontup or ()) != columns:
        raise RuntimeError(f"{table.name}: give every column that has a default")
    return _BulkInsert(sql=compiled.string, positional=compiled.positional)


@lru_cache(maxsize=8)
def datetime_to_db(dialect: Dialect) -> Callable[[datetime], Any]:
    """How a UTC datetime goes to the driver: SQLAlchemy's own processor for the dialect, or
    `isoformat` where that gives the very same text (SQLite, in SQLAlchemy's default storage
    format) several times faster."""
    processor = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return _same
    probe = datetime(2026, 1, 2, 3, 4, 5, 67, tzinfo=UTC)
    if processor(probe) == _iso_utc(probe) and processor(probe.replace(microsecond=0)) == \
            _iso_utc(probe.replace(microsecond=0)):
        return _iso_utc
    return cast(Callable[[datetime], Any], processor)


def utc_datetime_processor(dialect: Dialect, processor: Callable[[Any], Any]
                           ) -> Callable[[Any], Any]:
    """`processor` (SQLAlchemy's for a DateTime column), with UTC datetimes — every time
    omniloop writes — turned into text the fast way where `datetime_to_db` found it gives the
    same text (SQLite); anything else still goes through `processor`."""
    if datetime_to_db(dialect) is not _iso_utc:
        return processor

    def process(value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is UTC:
            return _iso_utc(value)
        return processor(value)

    return process


def _iso_utc(value: datetime) -> str:
    # A UTC datetime's isoformat ends in "+00:00"; cutting that off is cheaper than replace().
    return value.isoformat(" ", "microseconds")[:-6]


def _same(value: datetime) -> Any:
    return value


def insert_many(session: Session, table: Table, columns: tuple[str, ...],
                 rows: list[tuple[Any, ...]]) -> None:
    """INSERT `rows` (values in `columns` order, in the driver's form) with one executemany."""
    if not rows:
        return
    connection = session.connection()
    bulk = _bulk_insert(connection.dialect, table, columns)
    connection.exec_driver_sql(bulk.sql, rows if bulk.positional else
                               [dict(zip(columns, row, strict=True)) for row in rows])
