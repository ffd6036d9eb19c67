"""The database layer: pragmas, migrations matching the models, commit-at-the-edge."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from omniloop.core.db import Database, unsaved
from omniloop.core.migrate import downgrade, upgrade
from omniloop.models import Base


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    db.dispose()


def test_migrations_produce_exactly_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_every_table_leads_with_tenant_id(database: Database) -> None:
    inspector = inspect(database.engine)
    for table in Base.metadata.sorted_tables:
        if table.name == "tenants":
            continue
        primary_key = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert primary_key[0] == "tenant_id", table.name


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/roundtrip.db")
    upgrade(db.engine)
    assert "stores" in inspect(db.engine).get_table_names()
    downgrade(db.engine, "base")
    assert "stores" not in inspect(db.engine).get_table_names()
    upgrade(db.engine)
    assert "stores" in inspect(db.engine).get_table_names()
    db.dispose()


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(Exception, match="(?i)foreign key"), database.unit_of_work() as session:
        session.execute(text(
            "INSERT INTO staff_stores (tenant_id, staff_id, store_id) VALUES ('t', 's', 'x')"))


def test_a_read_unit_of_work_refuses_writes_on_sqlite(tmp_path: Path) -> None:
    # A GET that wrote would work in a quiet test and fail under load (a stale snapshot
    # cannot write); refused, it fails every time.
    db = Database(f"sqlite:///{tmp_path}/reads.db")
    with db.unit_of_work() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(Exception, match="readonly"), db.unit_of_work(write=False) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(Exception, match="readonly"), db.read_engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (2)"))
    with db.unit_of_work() as session:
        session.execute(text("INSERT INTO t VALUES (3)"))
    with db.unit_of_work(write=False) as session:
        assert session.execute(text("SELECT x FROM t")).scalars().all() == [3]
    db.dispose()


def test_unsaved_holds_the_column_defaults() -> None:
    from omniloop.loyalty.models import DEFAULT_TIERS, LoyaltyProgram

    program = unsaved(LoyaltyProgram, tenant_id="t1", earn_points=3)
    assert (program.tenant_id, program.earn_points, program.earn_unit_minor) == ("t1", 3, 10000)
    assert program.tiers == list(DEFAULT_TIERS)
    assert program.tiers is not DEFAULT_TIERS
    assert program.updated_at is not None


def test_the_wal_is_checkpointed_by_a_thread_of_its_own(tmp_path: Path) -> None:
    import time

    db = Database(f"sqlite:///{tmp_path}/wal.db")
    checkpointer = db.checkpointer
    assert checkpointer is not None
    checkpointer.every = 0.05
    with db.unit_of_work() as session:  # the first write connection starts the thread
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpointer.checkpoints >= 2
    db.dispose()
    assert checkpointer._thread is None
    done = checkpointer.checkpoints
    time.sleep(0.2)
    assert checkpointer.checkpoints == done  # stopped with the database


def test_the_checkpointer_never_creates_a_removed_database(tmp_path: Path) -> None:
    import time

    from omniloop.core.db import WalCheckpointer

    checkpointer = WalCheckpointer(str(tmp_path / "gone.db"), every=0.02)
    checkpointer.start()
    time.sleep(0.15)
    checkpointer.stop()
    assert not (tmp_path / "gone.db").exists()
    assert checkpointer.checkpoints == 0


def test_stored_works_before_any_orm_use() -> None:
    # A fresh server whose first request writes only through Core (an order, a redemption)
    # reaches `stored` before anything has configured the mappers.
    import subprocess
    import sys

    script = ("import omniloop.models\n"
              "from omniloop.core.db import stored\n"
              "from omniloop.tenancy.models import Tenant\n"
              "print(stored(Tenant, {'id': 't1', 'slug': 's', 'name': 'n'}).slug)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.stdout.strip() == "s", done.stderr
