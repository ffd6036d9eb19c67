"""Hot statements compiled once per dialect and run on the driver's cursor.

SQLAlchemy costs about 15–20 µs of CPU to run a prepared Core statement (cache-key look-up,
an execution context, parameter and result processing set up anew) against 1–3 µs for the
driver itself; an order with its points runs some fifteen statements, all while it holds
SQLite's one write lock (docs/benchmarks.md). `Prepared` keeps the statement as Core — one
source of SQL for SQLite and PostgreSQL — and does once, per dialect, what SQLAlchemy does
per call: the SQL text, the parameters' order and the type processors of the parameters and
the result columns that need one (datetimes on SQLite, JSON, enums). Calls then go straight
to the DB-API cursor of the session's connection, inside the session's transaction.

Rows come back as tuples (unpack them). Driver errors are raised as SQLAlchemy's (an
`IntegrityError` stays catchable as before). Statements with expanding `IN` parameters are
refused: their SQL changes with the list. When the engine has cursor listeners (the tests'
arranging engine upgrades its transaction at the first write), calls go through SQLAlchemy
so that the listeners see them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, DateTime, Dialect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable

from omniloop.core.db import Session, utc_datetime_processor

Row = tuple[Any, ...]
_Processor = Callable[[Any], Any]


@dataclass
class _Plan:
    sql: str
    positional: bool
    # (parameter name as given, name in the SQL, default if not given, bind processor)
    binds: tuple[tuple[str, str, Any, _Processor | None], ...]
    result_types: tuple[Any, ...]  # the result columns' types, processors found at first use
    results: tuple[tuple[int, _Processor], ...] | None = None  # columns needing processing

    def __post_init__(self) -> None:
        # What `_parameters` runs per call, worked out once: the values by key (or their
        # defaults), then only the parameters that need more (a processor, a value made per
        # call, a check that it was given).
        self.defaults = tuple((key, default) for key, _name, default, _p in self.binds)
        self.names = tuple(name for _key, name, _d, _p in self.binds)
        self.processed = tuple(
            (index, processor) for index, (_key, _name, default, processor)
            in enumerate(self.binds)
            if processor is not None or default is _MISSING or isinstance(default, _Generated))


class _Generated:
    """A column's Python-side default or onupdate (an id, the time), made per call."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


_MISSING = object()


def _python_default(column: Any, update: bool) -> _Generated:
    default = column.onupdate if update else column.default
    if default.is_callable:
        return _Generated(lambda: default.arg(None))  # SQLAlchemy's wrapper takes a context
    return _Generated(lambda: default.arg)


@dataclass(frozen=True)
class _Bound:
    """The session's connection for the transaction at hand, as the calls need it."""

    transaction: Any  # the session's root transaction it belongs to
    connection: Connection
    dialect: Dialect
    dbapi_connection: Any
    listened: bool  # the engine has cursor listeners: go through SQLAlchemy


_BOUND = "omniloop.prepared.bound"


def _bound(session: Session) -> _Bound:
    # session.connection() costs ~5 µs each time; an order runs some fifteen statements. The
    # connection is remembered per transaction of the session (a commit or rollback starts
    # another, which may get another connection).
    bound: _Bound | None = session.info.get(_BOUND)
    if bound is not None and bound.transaction is session.get_transaction():
        return bound
    connection = session.connection()
    bound = _Bound(session.get_transaction(), connection, connection.dialect,
                   connection.connection.dbapi_connection,
                   bool(connection.dispatch.before_cursor_execute))
    session.info[_BOUND] = bound
    return bound


class Prepared:
    """`statement` run on the driver's cursor (see the module). For an INSERT or UPDATE,
    `columns` are the column keys every call gives (its SQL depends on them); Python-side
    column defaults are not applied, so give every value."""

    def __init__(self, statement: Executable, columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.columns = list(columns) if columns is not None else None
        self._plans: dict[Dialect, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect)
        if plan is None:
            plan = self._plans[dialect] = self._compile(dialect)
        return plan

    def _compile(self, dialect: Dialect) -> _Plan:
        compiled = cast(SQLCompiler, self.statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=self.columns))
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("Prepared statements take no expanding (IN list) parameters")
        escaped: dict[str, str] = compiled.escaped_bind_names or {}
        order = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        generated = {column.key: _python_default(column, update=False)
                     for column in compiled.insert_prefetch}
        generated.update({column.key: _python_default(column, update=True)
                          for column in compiled.update_prefetch})
        given = set(self.columns or ())
        binds: list[tuple[str, str, Any, _Processor | None]] = []
        for name in order:
            parameter: BindParameter[Any] = compiled.binds[name]
            key = parameter.key
            if key in generated:
                default: Any = generated[key]
            elif parameter.required or key in given:
                default = _MISSING
            else:
                default = parameter.effective_value
            processor: _Processor | None = parameter.type.dialect_impl(
                dialect).bind_processor(dialect)
            if processor is not None and isinstance(parameter.type, DateTime):
                processor = utc_datetime_processor(dialect, processor)
            binds.append((key, escaped.get(name, name), default, processor))
        return _Plan(sql=compiled.string, positional=compiled.positional, binds=tuple(binds),
                     result_types=tuple(column.type for column in
                                        getattr(self.statement, "exported_columns", ())))

    def _parameters(self, plan: _Plan, params: Mapping[str, Any]) -> Any:
        get = params.get
        values = [get(key, default) for key, default in plan.defaults]
        for index, processor in plan.processed:
            value = values[index]
            if value is _MISSING:
                raise KeyError(f"{plan.binds[index][0]}: a value is required")
            if isinstance(value, _Generated):
                value = value.make()
            values[index] = processor(value) if processor is not None else value
        if plan.positional:
            return values
        return dict(zip(plan.names, values, strict=True))

    def _execute(self, session: Session, params: Sequence[Mapping[str, Any]],
                 many: bool = False) -> tuple[Any, tuple[tuple[int, _Processor], ...] | None]:
        """`params`: one mapping, or with `many` one per execution."""
        bound = _bound(session)
        connection, dialect = bound.connection, bound.dialect
        if bound.listened:
            given = [dict(row) for row in params]
            return connection.execute(self.statement, given if many else given[0]), None
        plan = self._plan(dialect)
        cursor = bound.dbapi_connection.cursor()
        parameters = [self._parameters(plan, row) for row in params]
        try:
            if many:
                cursor.executemany(plan.sql, parameters)
            else:
                cursor.execute(plan.sql, parameters[0])
        except dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(plan.sql, parameters, error, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from error
        if many or cursor.description is None:
            return cursor, None
        return cursor, self._result_processors(plan, dialect, cursor)

    @staticmethod
    def _result_processors(plan: _Plan, dialect: Dialect, cursor: Any
                           ) -> tuple[tuple[int, _Processor], ...]:
        # A processor may depend on the driver's type code of the column (PostgreSQL's
        # numerics), known from the first answer's description.
        if plan.results is None:
            codes = [entry[1] for entry in cursor.description or ()]
            found = []
            for index, (kind, code) in enumerate(zip(plan.result_types, codes, strict=False)):
                processor = kind.dialect_impl(dialect).result_processor(dialect, code)
                if processor is not None:
                    found.append((index, processor))
            plan.results = tuple(found)
        return plan.results

    @staticmethod
    def _processed(processors: tuple[tuple[int, _Processor], ...] | None, row: Any) -> Row:
        if not processors:
            return tuple(row)
        values = list(row)
        for index, processor in processors:
            values[index] = processor(values[index])
        return tuple(values)

    def rows(self, session: Session, params: Mapping[str, Any]) -> list[Row]:
        """Every row of the answer."""
        cursor, processors = self._execute(session, (params,))
        return [self._processed(processors, row) for row in cursor.fetchall()]

    def first(self, session: Session, params: Mapping[str, Any]) -> Row | None:
        """The first row of the answer, or None."""
        cursor, processors = self._execute(session, (params,))
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else self._processed(processors, row)

    def scalar(self, session: Session, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.first(session, params)
        return None if row is None else row[0]

    def run(self, session: Session, params: Mapping[str, Any]) -> int:
        """Execute a statement that answers nothing; the number of rows it changed."""
        cursor, _processors = self._execute(session, (params,))
        return int(cursor.rowcount)

    def run_many(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute the statement once per row of parameters (one executemany)."""
        if rows:
            self._execute(session, rows, many=True)


@lru_cache(maxsize=16)
def _savepoint_statements(name: str) -> tuple[Prepared, Prepared, Prepared]:
    return (Prepared(text(f"SAVEPOINT {name}")), Prepared(text(f"RELEASE SAVEPOINT {name}")),
            Prepared(text(f"ROLLBACK TO SAVEPOINT {name}")))


@contextmanager
def plain_savepoint(session: Session, name: str) -> Iterator[None]:
    """A savepoint around Core statements, rolled back if the block raises, issued as plain
    SQL: the session's own (`begin_nested`) compiles its statements on every use, ~19 µs
    against ~2. Not for ORM writes: the session does not know of it, so its objects would not
    be rolled back with it. On PostgreSQL the rollback also ends the aborted state a failed
    statement leaves, so the caller can go on (look a key up after an IntegrityError)."""
    begin, release, rollback = _savepoint_statements(name)
    begin.run(session, {})
    try:
        yield
    except BaseException:
        rollback.run(session, {})
        release.run(session, {})
        raise
    release.run(session, {})
