"""Prepared statements give what SQLAlchemy's own execution gives — the same rows, with the
same types, and the same errors — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from omniloop.core.clock import as_utc
from omniloop.core.db import Database, Session
from omniloop.core.prepared import Prepared
from omniloop.tenancy import tenants
from omniloop.tenancy.models import Role, StaffUser, Store

STORES = cast(Table, Store.__table__)
STAFF = cast(Table, StaffUser.__table__)
STORE_COLUMNS = ("tenant_id", "id", "code", "name", "address", "latitude", "longitude", "phone",
                 "opening_hours", "active", "created_at", "updated_at")
INSERT_STORE = Prepared(insert(STORES), columns=STORE_COLUMNS)
STORE_BY_CODE = Prepared(select(STORES).where(STORES.c.tenant_id == bindparam("tenant_id"),
                                              STORES.c.code == bindparam("code")))
RENAME = Prepared(update(STORES).where(STORES.c.tenant_id == bindparam("tenant_id"),
                                       STORES.c.code == bindparam("code"))
                  .values(name=bindparam("name")).returning(STORES.c.updated_at,
                                                            STORES.c.opening_hours))
MOMENT = datetime(2026, 11, 25, 8, 30, 15, 123456, tzinfo=UTC)


def _store(tenant_id: str, code: str) -> dict[str, object]:
    return {"tenant_id": tenant_id, "id": f"S{code}", "code": code, "name": f"門市 {code}",
            "address": "", "latitude": 25.03, "longitude": None, "phone": "",
            "opening_hours": {"mon": ["09:00", "21:00"]}, "active": True,
            "created_at": MOMENT, "updated_at": MOMENT}


@pytest.fixture
def tenant_id(database: Database) -> str:
    with database.unit_of_work() as session:
        return tenants.create_tenant(session, slug="prep", name="Prepared").id


def test_rows_are_what_sqlalchemy_reads(database: Database, tenant_id: str) -> None:
    with database.unit_of_work() as session:
        INSERT_STORE.run_many(session, [_store(tenant_id, "A1"), _store(tenant_id, "B2")])
    with database.unit_of_work(write=False) as session:
        ours = STORE_BY_CODE.first(session, {"tenant_id": tenant_id, "code": "A1"})
        theirs = session.connection().execute(STORE_BY_CODE.statement,
                                              {"tenant_id": tenant_id, "code": "A1"}).one()
        assert ours == tuple(theirs)
        assert ours is not None
        assert as_utc(ours[STORES.c.keys().index("created_at")]) == MOMENT
        assert STORE_BY_CODE.rows(session, {"tenant_id": tenant_id, "code": "none"}) == []
        assert STORE_BY_CODE.scalar(session, {"tenant_id": tenant_id, "code": "B2"}) == tenant_id


def test_updates_count_rows_and_return_typed_columns(database: Database, tenant_id: str) -> None:
    with database.unit_of_work() as session:
        INSERT_STORE.run(session, _store(tenant_id, "A1"))
        # updated_at is the column's onupdate, made per call as SQLAlchemy would.
        [(updated_at, opening_hours)] = RENAME.rows(
            session, {"tenant_id": tenant_id, "code": "A1", "name": "新"})
        assert as_utc(updated_at) > MOMENT
        assert opening_hours == {"mon": ["09:00", "21:00"]}
        plain = Prepared(update(STORES).where(STORES.c.tenant_id == bindparam("tenant_id"))
                         .values(active=False))
        assert plain.run(session, {"tenant_id": tenant_id}) == 1
    with database.unit_of_work(write=False) as session:
        store = session.get(Store, (tenant_id, "SA1"))
        assert store is not None
        assert (store.name, store.active) == ("新", False)


def test_enums_go_in_and_come_out_as_enums(database: Database, tenant_id: str) -> None:
    values = {"tenant_id": tenant_id, "email": "a@example.com", "name": "A",
              "password_hash": "x", "role": Role.cashier, "locale": None, "locked_until": None}
    with database.unit_of_work() as session:
        # Columns with Python-side defaults not given (id, active, ...) get them per call.
        Prepared(insert(STAFF), columns=list(values)).run(session, {**values, "id": "ST1"})
        Prepared(insert(STAFF), columns=list(values)).run(
            session, {**values, "email": "b@example.com"})
        ids = Prepared(select(STAFF.c.id).where(STAFF.c.tenant_id == bindparam("t")))
        assert len({row[0] for row in ids.rows(session, {"t": tenant_id})}) == 2
        role = Prepared(select(STAFF.c.role).where(STAFF.c.id == bindparam("id")))
        assert role.scalar(session, {"id": "ST1"}) is Role.cashier


def test_driver_errors_are_sqlalchemys(database: Database, tenant_id: str) -> None:
    with database.unit_of_work() as session:
        INSERT_STORE.run(session, _store(tenant_id, "A1"))
    with pytest.raises(IntegrityError), database.unit_of_work() as session:
        INSERT_STORE.run(session, _store(tenant_id, "A1"))


def test_every_value_must_be_given(database: Database, tenant_id: str) -> None:
    values = _store(tenant_id, "A1")
    del values["phone"]
    with pytest.raises(KeyError, match="phone"), database.unit_of_work() as session:
        INSERT_STORE.run(session, values)


def test_expanding_parameters_are_refused(database: Database) -> None:
    statement = Prepared(select(STORES.c.id).where(STORES.c.code.in_(bindparam("codes",
                                                                               expanding=True))))
    with pytest.raises(ValueError, match="expanding"), \
            database.unit_of_work(write=False) as session:
        statement.rows(session, {"codes": ["A1"]})


def test_listeners_of_the_engine_see_the_statements(session: Session, tenant_id: str) -> None:
    # The tests' arranging session upgrades its transaction at the first write (a cursor
    # listener); statements that bypassed it would hit its read-only snapshot.
    INSERT_STORE.run(session, _store(tenant_id, "L1"))
    assert STORE_BY_CODE.first(session, {"tenant_id": tenant_id, "code": "L1"}) is not None
    session.commit()
