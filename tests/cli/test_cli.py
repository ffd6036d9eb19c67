"""The `omniloop` command, in-process against the test database and as a real process."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import cache
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from omniloop.cli import app
from omniloop.core import security
from omniloop.core.db import Database, Session, set_database
from omniloop.core.security import verify_password
from omniloop.models import Base
from omniloop.tenancy import staff
from omniloop.tenancy.models import ApiKey, Role, StaffStore, StaffUser, Store, Tenant
from tests.tenancy.factories import bearer, make_store, make_tenant

Invoke = Callable[..., Result]
T = TypeVar("T")


@pytest.fixture
def cli(database: Database) -> Iterator[Invoke]:
    """Runs `omniloop --database-url <the test database> …` in-process."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["--database-url", database.url, *args], input=input)

    yield invoke
    set_database(database)  # the command pointed the process at its own Database


def _row_counts(session: Session) -> dict[str, int]:
    session.rollback()
    return {table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables}


def _get(session: Session, model: type[T], key: object) -> T:
    """A row as committed by the command (ending the test's own read transaction first)."""
    session.rollback()
    row = session.get(model, key)
    assert row is not None, f"{model.__name__} {key} was not written"
    return row


def _last_line(result: Result) -> str:
    return result.stdout.rstrip("\n").splitlines()[-1]


def test_create_a_brand_with_store_staff_and_a_working_api_key(
        cli: Invoke, client: TestClient, session: Session) -> None:
    made = cli("tenant", "create", "--slug", "beanhouse", "--name", "豆留咖啡")
    assert made.exit_code == 0, made.output
    tenant = _get(session, Tenant, _last_line(made))
    assert (tenant.slug, tenant.currency, tenant.timezone, tenant.locale) == (
        "beanhouse", "TWD", "Asia/Taipei", "zh_TW")

    made = cli("store", "create", "--tenant", "beanhouse", "--code", "tpe-xinyi",
               "--name", "信義店", "--address", "台北市信義區松仁路 100 號", "--lat", "25.0358",
               "--lng", "121.5683", "--phone", "02-2722-3168")
    assert made.exit_code == 0, made.output
    store = _get(session, Store, (tenant.id, _last_line(made)))
    assert (store.code, store.latitude, store.phone) == ("TPE-XINYI", 25.0358, "02-2722-3168")

    made = cli("staff", "create", "--tenant", "beanhouse", "--email", "Cashier@Beanhouse.tw",
               "--name", "張家豪", "--role", "cashier", "--store", "TPE-XINYI",
               "--password-stdin", input="a long passphrase\n")
    assert made.exit_code == 0, made.output
    cashier = _get(session, StaffUser, (tenant.id, _last_line(made)))
    assert (cashier.email, cashier.role) == ("cashier@beanhouse.tw", Role.cashier)
    assert verify_password(cashier.password_hash, "a long passphrase")
    assert staff.store_ids_of(session, tenant.id, cashier.id) == [store.id]

    made = cli("apikey", "create", "--tenant", "beanhouse", "--name", "POS 信義店",
               "--scope", "pos", "--scope", "ingest", "--store", "tpe-xinyi")
    assert made.exit_code == 0, made.output
    secret = _last_line(made)
    assert re.fullmatch(r"olk_[A-Za-z0-9_-]{40,}", secret), made.stdout
    assert made.stdout.count(secret) == 1

    me = client.get("/api/v1/me", headers=bearer(secret))
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["slug"] == "beanhouse"
    assert (me.json()["scopes"], me.json()["store_ids"]) == (["ingest", "pos"], [store.id])


def test_staff_password_prompt_asks_twice(cli: Invoke, session: Session) -> None:
    tenant = make_tenant(session, slug="prompted")
    made = cli("staff", "create", "--tenant", "prompted", "--email", "owner@prompted.tw",
               "--name", "林雅婷", "--role", "owner",
               input="first passphrase\nfirst passphrase\n")
    assert made.exit_code == 0, made.output
    member = _get(session, StaffUser, (tenant.id, _last_line(made)))
    assert verify_password(member.password_hash, "first passphrase")
    assert "first passphrase" not in made.stdout


@pytest.mark.parametrize(("args", "code"), [
    (["tenant", "create", "--slug", "taken", "--name", "Again"], "tenant_slug_taken"),
    (["tenant", "create", "--slug", "Not A Slug!", "--name", "X"], "invalid_tenant_setting"),
    (["tenant", "create", "--slug", "fresh", "--name", "X", "--timezone", "Mars/Base"],
     "invalid_tenant_setting"),
    (["store", "create", "--tenant", "taken", "--code", "S2", "--name", "x", "--lat", "200",
      "--lng", "121.5"], "validation_error"),
    (["store", "create", "--tenant", "taken", "--code", "S2", "--name", "x", "--lat", "25.0"],
     "validation_error"),
    (["store", "create", "--tenant", "taken", "--code", "S1", "--name", "x"],
     "store_code_taken"),
    (["store", "create", "--tenant", "nobody", "--code", "S2", "--name", "x"],
     "tenant_not_found"),
    (["staff", "create", "--tenant", "taken", "--email", "a@b.tw", "--name", "A",
      "--role", "barista", "--password", "long enough pw"], "validation_error"),
    (["staff", "create", "--tenant", "taken", "--email", "a@b.tw", "--name", "A",
      "--role", "cashier", "--store", "NOPE", "--password", "long enough pw"],
     "store_not_found"),
    (["staff", "create", "--tenant", "taken", "--email", "a@b.tw", "--name", "A",
      "--role", "cashier", "--password", "long enough pw"], "stores_required"),
    (["staff", "create", "--tenant", "taken", "--email", "a@b.tw", "--name", "A",
      "--role", "owner", "--password", "short"], "validation_error"),
    (["apikey", "create", "--tenant", "taken", "--name", "k", "--scope", "root"],
     "validation_error"),
    (["apikey", "create", "--tenant", "taken", "--name", "k", "--scope", "pos",
      "--store", "NOPE"], "store_not_found"),
])
def test_bad_input_exits_2_with_the_error_code_and_writes_nothing(
        cli: Invoke, session: Session, args: list[str], code: str) -> None:
    tenant = make_tenant(session, slug="taken")
    make_store(session, tenant, code="S1")
    before = _row_counts(session)

    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {code}: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert _row_counts(session) == before


def test_db_upgrade_on_a_current_schema(cli: Invoke) -> None:
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.stdout


def test_unreachable_database_is_one_line_not_a_traceback(database: Database) -> None:
    result = CliRunner().invoke(app, ["--database-url",
                                      "postgresql+psycopg://nobody@127.0.0.1:9/none",
                                      "tenant", "create", "--slug", "x1", "--name", "X"])
    set_database(database)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database_error: ")
    assert "Traceback" not in result.output


def test_init_and_demo_as_real_processes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNILOOP_")}
    env["OMNILOOP_DATA_DIR"] = str(data_dir)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "omniloop.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=180,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done

    database_file = data_dir / "omniloop.db"
    init = run("init")
    assert str(database_file.resolve()) in init.stdout
    assert (data_dir / "secret_key").stat().st_size > 40

    demo = run("demo", "--customers", "15")
    out = demo.stdout
    assert "http://127.0.0.1:8000/admin" in out
    assert re.search(r"brand code: beanhouse$", out, re.MULTILINE)
    for email in ("owner@beanhouse.demo", "marketer@beanhouse.demo",
                  "manager@beanhouse.demo", "cashier.xinyi@beanhouse.demo"):
        assert email in out
    password = re.search(r"password:\s+(\S+)", out)
    assert password, out

    with closing(sqlite3.connect(database_file)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT count(*) FROM stores").fetchone()[0] == 8
        owner_hash = connection.execute("SELECT password_hash FROM staff_users "
                                        "WHERE email = 'owner@beanhouse.demo'").fetchone()[0]
    assert verify_password(owner_hash, password.group(1)), "the printed password must work"



def test_demo_twice_reports_nothing_new(cli: Invoke, session: Session,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staff, "hash_password", cache(security.hash_password))
    first = cli("demo", "--port", "8080", "--customers", "10")
    assert first.exit_code == 0, first.output
    assert "added now: 8 stores, 11 staff, 31 products" in first.stdout
    assert "http://127.0.0.1:8080/admin" in first.stdout
    before = _row_counts(session)

    second = cli("demo", "--customers", "10")
    assert second.exit_code == 0, second.output
    assert re.search(r"8 stores, 11 staff, 31 products, 10 customers, \d+ orders; "
                     r"nothing new to add", second.stdout), second.stdout
    assert _row_counts(session) == before


def test_api_keys_print_nothing_after_the_key(cli: Invoke, session: Session) -> None:
    make_tenant(session, slug="keys")
    result = cli("apikey", "create", "--tenant", "keys", "--name", "BI", "--scope", "admin")
    assert result.exit_code == 0, result.output
    session.rollback()
    key = session.scalars(select(ApiKey)).one()
    assert _last_line(result).startswith(key.key_prefix)
    assert result.stdout.endswith(_last_line(result) + "\n")
    assert session.scalar(select(func.count()).select_from(StaffStore)) == 0
