"""Importing orders: one row per line, grouped by order number, idempotent by that number."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from omniloop.core.clock import as_utc
from omniloop.core.db import Database, Session
from omniloop.core.errors import Forbidden
from omniloop.customers.models import CustomerIdentity, Event
from omniloop.imports.errors import MissingColumns
from omniloop.imports.orders import import_orders
from omniloop.imports.report import ImportReport
from omniloop.orders import service as orders_service
from omniloop.orders.models import Order, OrderChannel
from omniloop.orders.schemas import OrderIn
from omniloop.tenancy.access import staff_actor, system_actor
from omniloop.tenancy.models import AuditEntry, Role, Store, Tenant
from tests.imports.factories import DATA, csv_file, table_counts
from tests.tenancy.factories import fresh, make_store, make_tenant

HEADER = "訂單編號,門市,通路,日期,時間,手機,品號,品名,類別,數量,單價,折扣"


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse")


@pytest.fixture
def store(session: Session, tenant: Tenant) -> Store:
    return make_store(session, tenant, code="TPE01", name="信義店")


def run(database: Database, tenant: Tenant, data: bytes, *, skip: bool = False,
        **options: Any) -> ImportReport:
    with database.unit_of_work() as session:
        return import_orders(session, system_actor(tenant.id, "test"), data, "sales.csv",
                             skip_bad_rows=skip, **options)


def orders_by_id(session: Session) -> dict[str, Order]:
    fresh(session)
    return {order.external_id: order for order in session.scalars(
        select(Order).options(selectinload(Order.lines)))}


def test_pos_export_with_roc_dates_grouped_by_order(database: Database, session: Session,
                                                    tenant: Tenant, store: Store) -> None:
    report = run(database, tenant, (DATA / "orders_utf8_bom.csv").read_bytes())
    assert report.errors == []
    assert report.summary() == {"rows": 5, "orders": 4, "created": 4, "unchanged": 0,
                                "skipped": 0, "errors": 0}
    assert report.ignored_columns == ["小計"]
    orders = orders_by_id(session)
    first = orders["POS-TPE01-0001"]
    assert (first.channel, first.store_id, first.source) == (OrderChannel.store, store.id,
                                                             "import")
    assert as_utc(first.paid_at) == datetime(2024, 11, 20, 6, 30, tzinfo=UTC)  # 14:30 Taipei
    assert [(line.position, line.sku, line.name, line.category, line.quantity,
             line.unit_price_minor, line.discount_minor, line.total_minor)
            for line in first.lines] == [
        (1, "CF-LATTE", "拿鐵", "咖啡", 2, 13000, 1000, 25000),
        (2, "DS-BASQUE", "巴斯克乳酪蛋糕", "甜點", 1, 8000, 0, 8000)]
    assert first.total_minor == 33000
    assert orders["POS-TPE01-0002"].total_minor == 110000  # "1,100"
    online = orders["WEB-20241121-7"]
    assert (online.channel, online.store_id, online.customer_id) == (
        OrderChannel.online, None, None)
    buyers = {(i.kind.value, i.value): i.customer_id
              for i in session.scalars(select(CustomerIdentity))}
    assert first.customer_id == buyers[("phone", "+886912345678")]
    assert orders["POS-TPE01-0002"].customer_id == buyers[("pos_card", "M0002")]
    assert orders["POS-TPE01-0003"].customer_id is None
    purchases = session.scalars(select(Event).where(Event.type == "purchase")).all()
    assert len(purchases) == 4


def test_importing_the_same_file_again_changes_nothing(database: Database, session: Session,
                                                       tenant: Tenant, store: Store) -> None:
    data = (DATA / "orders_utf8_bom.csv").read_bytes()
    run(database, tenant, data)
    before = table_counts(session)
    digests = {k: o.content_digest for k, o in orders_by_id(session).items()}
    again = run(database, tenant, data)
    assert again.summary() == {"rows": 5, "orders": 4, "created": 0, "unchanged": 4,
                               "skipped": 0, "errors": 0}
    assert table_counts(session) == {**before, "audit": before["audit"] + 1}
    assert {k: o.content_digest for k, o in orders_by_id(session).items()} == digests


BAD_ORDERS = csv_file(
    HEADER,
    "A1,TPE01,門市,2024-11-20,14:30,0912345678,CF-LATTE,拿鐵,咖啡,2,130,0",  # 2: good
    "A1,,,,,,DS-BASQUE,蛋糕,甜點,1,80,",  # 3: good, order-level cells left empty
    "A2,TPE01,門市,2024-11-20,15:00,,CF-AME,美式,咖啡,0,90,",  # 4: quantity
    "A2,TPE09,門市,2024-11-20,15:00,,CF-AME,美式,咖啡,1,abc,",  # 5: store, price
    "A3,TPE01,門市,2024-11-20,16:00,,CF-AME,美式,咖啡,1,90,",  # 6: good alone...
    "A3,TPE01,門市,2024-11-21,16:00,,CF-AME,美式,咖啡,1,90,",  # 7: ...but a different date
    ",TPE01,門市,2024-11-20,16:00,,CF-AME,美式,咖啡,1,90,",  # 8: no order number
    "A4,TPE01,網路,2024-11-20,16:00,,CF-AME,美式,咖啡,1,90,",  # 9: online with a store
    "A5,,,2999-01-01,10:00,,CF-AME,美式,咖啡,1,90,100",  # 10: future; discount
    "A6,,網路,2024-11-20,下午 03:00:00,,BEAN-1KG,咖啡豆,,1,950,",  # 11: good (online)
)
BAD_ORDER_ERRORS = [
    (4, "數量", "'0' is not a quantity: use a whole number above zero."),
    (5, "單價", "'abc' is not an amount: use a number like 120, 1,200 or NT$120."),
    (5, "門市", "No store has the code or name 'TPE09'."),
    (7, "日期", "Differs from row 6 of the same order."),
    (8, "訂單編號", "This cell is required."),
    (9, "通路", "An online order has no store: leave the store empty."),
    (10, "折扣", "The discount is larger than quantity × unit price."),
]


def test_bad_rows_reject_the_file_with_exact_errors(database: Database, session: Session,
                                                    tenant: Tenant, store: Store) -> None:
    before = table_counts(session)
    report = run(database, tenant, BAD_ORDERS)
    assert report.rejected is True
    assert [(e.row, e.column, e.text()) for e in report.errors] == BAD_ORDER_ERRORS
    assert table_counts(session) == before


def test_skip_bad_rows_leaves_out_whole_orders(database: Database, session: Session,
                                               tenant: Tenant, store: Store) -> None:
    report = run(database, tenant, BAD_ORDERS, skip=True)
    assert report.rejected is False
    assert [(e.row, e.column, e.text()) for e in report.errors] == BAD_ORDER_ERRORS
    assert report.summary() == {"rows": 10, "orders": 6, "created": 2, "unchanged": 0,
                                "skipped": 7, "errors": 7}
    orders = orders_by_id(session)
    assert sorted(orders) == ["A1", "A6"]
    assert [line.sku for line in orders["A1"].lines] == ["CF-LATTE", "DS-BASQUE"]
    assert orders["A6"].channel is OrderChannel.online
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "import.orders")).one()
    assert (entry.details["file_name"], entry.details["created"]) == ("sales.csv", 2)


def test_a_future_order_is_refused(database: Database, tenant: Tenant, store: Store) -> None:
    report = run(database, tenant, csv_file(
        "訂單編號,門市,交易時間,品號,數量,單價", "F1,TPE01,2999-01-01 10:00,X,1,90"))
    assert [(e.row, e.column, e.text()) for e in report.errors] == [
        (2, "交易時間", "The time 2999-01-01 10:00 is in the future.")]


def test_an_order_recorded_before_with_other_content_is_reported_on_its_row(
        database: Database, session: Session, tenant: Tenant, store: Store) -> None:
    with database.unit_of_work() as unit:
        orders_service.ingest_order(unit, system_actor(tenant.id), OrderIn.model_validate({
            "external_id": "A1", "store_code": "TPE01", "paid_at": "2024-11-20T14:30:00",
            "lines": [{"sku": "OTHER", "quantity": 1, "unit_price_minor": 100}]}))
    data = csv_file("訂單編號,門市,日期,品號,數量,單價",
                    "A0,TPE01,2024-11-19,CF-AME,1,90",
                    "A1,TPE01,2024-11-20 14:30,CF-LATTE,1,130")
    before = table_counts(session)
    report = run(database, tenant, data)
    assert report.rejected is True
    assert [(e.row, e.column, e.text()) for e in report.errors] == [
        (3, "訂單編號", "An order with the external id 'A1' already exists with different "
                    "content.")]
    assert table_counts(session) == before  # A0 was rolled back with the rest
    skipped = run(database, tenant, data, skip=True)
    assert skipped.summary() == {"rows": 2, "orders": 2, "created": 1, "unchanged": 0,
                                 "skipped": 1, "errors": 1}
    assert sorted(orders_by_id(session)) == ["A0", "A1"]


def test_missing_columns_refuse_the_file(database: Database, tenant: Tenant) -> None:
    with pytest.raises(MissingColumns) as caught:
        run(database, tenant, csv_file("訂單編號,品名,數量,單價", "A1,拿鐵,1,120"))
    assert str(caught.value) == "Required columns are missing: 品號/sku, 日期/時間/paid_at."


def test_who_may_import_orders(database: Database, session: Session, tenant: Tenant,
                               store: Store) -> None:
    data = (DATA / "orders_utf8_bom.csv").read_bytes()
    for role in (Role.marketer, Role.cashier):
        actor = staff_actor(tenant.id, "s", "staff", role,
                            frozenset({store.id}) if role is Role.cashier else frozenset())
        with pytest.raises(Forbidden), database.unit_of_work() as unit:
            import_orders(unit, actor, data, "sales.csv")
    owner = staff_actor(tenant.id, "o", "owner", Role.owner, frozenset())
    with database.unit_of_work() as unit:
        assert import_orders(unit, owner, data, "sales.csv").summary()["created"] == 4
