"""Importing customers: check every row first, write all good rows in one transaction."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.core.errors import Forbidden
from omniloop.customers.models import Customer, Gender
from omniloop.imports.customers import import_customers
from omniloop.imports.errors import NoIdentityColumn
from omniloop.imports.report import ImportReport
from omniloop.tenancy.access import staff_actor, system_actor
from omniloop.tenancy.models import AuditEntry, Role, Store, Tenant
from tests.customers.factories import make_customer
from tests.imports.factories import (
    DATA,
    csv_file,
    identities_by_customer,
    live_customers,
    table_counts,
)
from tests.tenancy.factories import fresh, make_store, make_tenant

LINE_ID = "U" + "a1" * 16


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse")


@pytest.fixture
def stores(session: Session, tenant: Tenant) -> dict[str, Store]:
    return {"TPE01": make_store(session, tenant, code="TPE01", name="信義店"),
            "TPE02": make_store(session, tenant, code="TPE02", name="南京店")}


def run(database: Database, tenant: Tenant, data: bytes, *, skip: bool = False,
        **options: Any) -> ImportReport:
    """An import in a unit of work of its own, as the CLI and the job worker run it."""
    with database.unit_of_work() as session:
        return import_customers(session, system_actor(tenant.id, "test"), data, "members.csv",
                                skip_bad_rows=skip, **options)


def by_name(session: Session) -> dict[str | None, Customer]:
    return {customer.name: customer for customer in live_customers(session)}


def test_big5_member_list_with_roc_dates(database: Database, session: Session,
                                         tenant: Tenant, stores: dict[str, Store]) -> None:
    report = run(database, tenant, (DATA / "customers_big5.csv").read_bytes())
    assert not report.rejected, report.errors
    assert report.errors == []
    assert report.summary() == {"rows": 4, "created": 4, "updated": 0, "merged": 0,
                                "skipped": 0, "errors": 0}
    assert report.ignored_columns == ["地址"]
    assert report.encoding == "Big5 (CP950)"
    people = by_name(session)
    amy = people["林小美"]
    assert (amy.birthday, amy.gender, amy.tags, amy.home_store_id) == (
        date(1991, 3, 8), Gender.female, ["VIP", "拿鐵"], stores["TPE01"].id)
    assert identities_by_customer(session)[amy.id] == {
        ("pos_card", "M0001"), ("phone", "+886912345678"), ("email", "amy.lin@example.com")}
    david = people["陳大文"]
    assert (david.birthday, david.gender, david.home_store_id) == (
        date(1986, 12, 25), Gender.male, stores["TPE01"].id)  # the store by its name
    assert people["王美玲"].gender is Gender.female
    chang = people["張家豪"]
    assert (chang.birthday, chang.gender, chang.tags, chang.home_store_id) == (
        date(1980, 1, 2), Gender.male, ["咖啡豆", "常客"], stores["TPE02"].id)
    assert ("phone", "+886933444555") in identities_by_customer(session)[chang.id]


def test_same_person_in_two_rows_is_one_customer(database: Database, session: Session,
                                                 tenant: Tenant,
                                                 stores: dict[str, Store]) -> None:
    report = run(database, tenant, (DATA / "customers_utf8_bom.csv").read_bytes())
    assert report.errors == []
    assert report.encoding == "UTF-8 (BOM)"
    assert report.summary() == {"rows": 4, "created": 3, "updated": 0, "merged": 0,
                                "skipped": 0, "errors": 0}
    people = by_name(session)
    assert sorted(str(name) for name in people) == ["吳佩珊", "李志明", "林小美"]
    amy = people["林小美"]
    assert identities_by_customer(session)[amy.id] == {
        ("phone", "+886912345678"), ("line", LINE_ID), ("email", "amy.lin@example.com"),
        ("ecommerce", "SHOP-1002")}
    assert amy.tags == ["咖啡", "甜點"]
    assert amy.birthday == date(1991, 3, 8)
    assert people["吳佩珊"].birthday == date(2000, 10, 10)  # 民國 89
    assert people["李志明"].home_store_id == stores["TPE02"].id


BAD_FILE = csv_file(
    "姓名,手機,電子郵件,生日,性別,門市,備註",
    "好人,0912345678,good@example.com,1990-01-01,男,TPE01,ok",
    "壞手機,12345,,,,,",
    "壞信箱,,not-an-email,80/02/30,?,TPE99,",
    "沒識別,,,,,,",
    "未來,0922333444,,2999-01-01,,,",
    "多,0933111222,,,,,,台北市,信義區",
)
BAD_FILE_ERRORS = [
    (3, "手機", "'12345' is not a valid phone identity."),
    (4, "電子郵件", "'not-an-email' is not a valid email identity."),
    (4, "生日", "'80/02/30' is not a date: use YYYY-MM-DD, YYYY/MM/DD or a ROC date like "
                "80/03/08."),
    (4, "性別", "'?' is not a gender: use 男/女, M/F or male/female."),
    (4, "門市", "No store has the code or name 'TPE99'."),
    (5, "手機/電子郵件", "No identity: give a phone, e-mail, LINE id, member card or online "
                     "shop id."),
    (6, "生日", "The birthday 2999-01-01 is in the future or before 1900."),
    (7, "", "This row has more cells than the header names: a value probably contains an "
            "unquoted ','."),
]


def test_a_bad_row_rejects_the_file_and_nothing_is_written(
        database: Database, session: Session, tenant: Tenant,
        stores: dict[str, Store]) -> None:
    before = table_counts(session)
    report = run(database, tenant, BAD_FILE)
    assert report.rejected is True
    assert [(e.row, e.column, e.text()) for e in report.errors] == BAD_FILE_ERRORS
    assert report.summary() == {"rows": 6, "created": 0, "updated": 0, "merged": 0,
                                "skipped": 0, "errors": 8}
    assert report.ignored_columns == ["備註"]
    assert table_counts(session) == before


def test_skip_bad_rows_imports_the_good_ones(database: Database, session: Session,
                                             tenant: Tenant, stores: dict[str, Store]) -> None:
    report = run(database, tenant, BAD_FILE, skip=True)
    assert report.rejected is False
    assert [(e.row, e.column, e.text()) for e in report.errors] == BAD_FILE_ERRORS
    assert report.summary() == {"rows": 6, "created": 1, "updated": 0, "merged": 0,
                                "skipped": 5, "errors": 8}
    assert list(by_name(session)) == ["好人"]
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "import.customers")).one()
    assert entry.details["file_name"] == "members.csv"
    assert (entry.details["rows"], entry.details["created"], entry.details["skipped"]) == (
        6, 1, 5)
    assert "0912345678" not in json.dumps(entry.details, ensure_ascii=False)
    assert "好人" not in json.dumps(entry.details, ensure_ascii=False)


def test_phone_formats_find_the_existing_customer(database: Database, session: Session,
                                                  tenant: Tenant) -> None:
    known = make_customer(session, tenant, ("phone", "0912-345-678"), name="林小美")
    report = run(database, tenant, csv_file(
        "手機,標籤", "+886 912 345 678,a", "912345678,b", "0912 345 678,c", "(0912)345678,d"))
    assert report.errors == []
    assert report.summary() == {"rows": 4, "created": 0, "updated": 1, "merged": 0,
                                "skipped": 0, "errors": 0}
    assert [c.id for c in live_customers(session)] == [known]
    assert identities_by_customer(session)[known] == {("phone", "+886912345678")}
    assert live_customers(session)[0].tags == ["a", "b", "c", "d"]


def test_a_row_joining_two_profiles_merges_them(database: Database, session: Session,
                                                tenant: Tenant) -> None:
    older = make_customer(session, tenant, ("pos_card", "C-1"), name="陳大文")
    newer = make_customer(session, tenant, ("email", "david@example.com"))
    report = run(database, tenant, csv_file("卡號,email", "C-1,David@Example.com"))
    assert report.summary() == {"rows": 1, "created": 0, "updated": 1, "merged": 1,
                                "skipped": 0, "errors": 0}
    assert [c.id for c in live_customers(session)] == [older]
    assert identities_by_customer(session)[older] == {
        ("pos_card", "C-1"), ("email", "david@example.com")}
    assert session.get_one(Customer, (tenant.id, newer)).merged_into_id == older


def test_importing_again_changes_no_identities(database: Database, session: Session,
                                               tenant: Tenant,
                                               stores: dict[str, Store]) -> None:
    data = (DATA / "customers_big5.csv").read_bytes()
    run(database, tenant, data)
    before = table_counts(session)
    identities = identities_by_customer(session)
    again = run(database, tenant, data)
    assert again.summary() == {"rows": 4, "created": 0, "updated": 4, "merged": 0,
                               "skipped": 0, "errors": 0}
    after = table_counts(session)
    assert after == {**before, "audit": before["audit"] + 1}
    assert identities_by_customer(session) == identities


def test_a_file_without_identity_columns_is_refused(database: Database, session: Session,
                                                    tenant: Tenant) -> None:
    with pytest.raises(NoIdentityColumn) as caught:
        run(database, tenant, csv_file("姓名,生日", "林小美,80/03/08"))
    assert str(caught.value) == (
        "The file needs at least one identity column: 手機/phone, email, LINE, 會員卡號/card, "
        "網路會員編號/ecommerce_id.")
    assert table_counts(session)["customers"] == 0


def test_progress_every_200_rows_in_both_passes(database: Database, tenant: Tenant) -> None:
    rows = [f"會員{i},09{i:08d}" for i in range(1, 451)]
    calls: list[Any] = []
    report = run(database, tenant, csv_file("姓名,手機", *rows),
                 on_progress=lambda done, total: calls.append((done, total)),
                 on_phase=calls.append)
    assert report.summary()["created"] == 450
    one_pass = [(0, 450), (200, 450), (400, 450), (450, 450)]
    assert calls == ["checking", *one_pass, "importing", *one_pass]


def test_cashiers_and_store_managers_cannot_import(database: Database, session: Session,
                                                   tenant: Tenant,
                                                   stores: dict[str, Store]) -> None:
    for role in (Role.cashier, Role.store_manager):
        actor = staff_actor(tenant.id, "s", "staff", role, frozenset({stores["TPE01"].id}))
        with pytest.raises(Forbidden), database.unit_of_work() as unit:
            import_customers(unit, actor, csv_file("手機", "0912345678"), "x.csv")
    fresh(session)
    assert table_counts(session)["customers"] == 0
