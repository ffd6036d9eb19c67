"""Real threads, real transactions: identical orders and competing refunds."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.customers.models import Customer, Event
from omniloop.orders import refunds, service
from omniloop.orders.models import Order, OrderLine, Refund, RefundLine
from omniloop.orders.schemas import OrderIn, RefundIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Tenant
from tests.orders.factories import NETS, TOTAL, count_rows, make_order, order_body
from tests.tenancy.factories import fresh, make_store, make_tenant
from tests.tenancy.test_concurrency import race


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse")


def _no_crashes(outcomes: Counter[str]) -> None:
    assert not [o for o in outcomes if o.startswith("crash")], outcomes


def test_identical_orders_at_once_make_one_order(database: Database, session: Session,
                                                 tenant: Tenant) -> None:
    store = make_store(session, tenant)
    body = order_body(store_id=store.id,
                      identities=[{"kind": "phone", "value": "0912-000-111"}])

    def post(_: int) -> str:
        with database.unit_of_work() as uow:
            order, created = service.ingest_order(uow, system_actor(tenant.id),
                                                  OrderIn.model_validate(body))
            return f"{order.id}:{'created' if created else 'replayed'}"

    outcomes = race(8, post)
    _no_crashes(outcomes)
    assert sum(outcomes.values()) == 8
    assert len({o.split(":")[0] for o in outcomes}) == 1  # every caller got the same order
    assert sum(n for o, n in outcomes.items() if o.endswith(":created")) == 1
    assert count_rows(session, Order) == 1
    assert count_rows(session, OrderLine) == 2
    assert count_rows(session, Customer) == 1
    assert count_rows(session, Event, Event.type == "purchase") == 1


def _refund(database: Database, tenant: Tenant, order_id: str, body: dict[str, Any]) -> str:
    with database.unit_of_work() as uow:
        made, created = refunds.refund(uow, system_actor(tenant.id), order_id,
                                       RefundIn.model_validate(body))
        return f"{made.id}:{'created' if created else 'replayed'}"


def _check_totals(session: Session, order_id: str) -> Order:
    fresh(session)
    order = session.scalars(select(Order).where(Order.id == order_id)).one()
    refund_rows = list(session.scalars(select(Refund).where(Refund.order_id == order_id)))
    assert order.refunded_minor == sum(r.amount_minor for r in refund_rows)
    assert order.refunded_minor <= order.total_minor
    assert count_rows(session, Event, Event.type == "refund") == len(refund_rows)
    assert count_rows(session, AuditEntry, AuditEntry.action == "order.refund") == len(
        refund_rows)
    return order


def test_competing_amount_refunds_never_pass_the_total(database: Database, session: Session,
                                                      tenant: Tenant) -> None:
    order = make_order(session, tenant)
    outcomes = race(8, lambda i: _refund(database, tenant, order.id, {
        "external_id": f"RF-{i}", "amount_minor": 7000}).split(":")[1])
    _no_crashes(outcomes)
    assert outcomes == Counter({"created": 4, "refund_exceeds_order": 4})
    final = _check_totals(session, order.id)
    assert (final.refunded_minor, final.status) == (28000, "partially_refunded")


def test_competing_full_refunds_refund_once(database: Database, session: Session,
                                            tenant: Tenant) -> None:
    order = make_order(session, tenant)
    outcomes = race(6, lambda i: _refund(database, tenant, order.id, {
        "external_id": f"RF-{i}"}).split(":")[1])
    _no_crashes(outcomes)
    assert outcomes == Counter({"created": 1, "nothing_to_refund": 5})
    assert _check_totals(session, order.id).refunded_minor == TOTAL
    assert count_rows(session, RefundLine) == 2


def test_competing_returns_of_one_line(database: Database, session: Session,
                                       tenant: Tenant) -> None:
    order = make_order(session, tenant)
    outcomes = race(6, lambda i: _refund(database, tenant, order.id, {
        "external_id": f"RF-{i}", "lines": [{"position": 1, "quantity": 1}]}).split(":")[1])
    _no_crashes(outcomes)
    assert outcomes == Counter({"created": 2, "refund_exceeds_line": 4})
    final = _check_totals(session, order.id)
    assert final.refunded_minor == NETS[0]  # both units: the line's net exactly
    line = session.scalars(select(OrderLine).where(OrderLine.order_id == order.id,
                                                   OrderLine.position == 1)).one()
    assert line.refunded_quantity == 2


def test_mixed_refunds_at_once_stay_within_the_total(database: Database, session: Session,
                                                     tenant: Tenant) -> None:
    order = make_order(session, tenant)
    bodies: list[dict[str, Any]] = [
        {"amount_minor": 9000}, {"amount_minor": 9000}, {"lines": [{"position": 1,
                                                                   "quantity": 2}]},
        {"lines": [{"position": 2, "quantity": 1}]}, {"lines": [{"position": 1,
                                                                "quantity": 1}]},
        {}, {"amount_minor": 1}, {"amount_minor": 20000}]
    outcomes = race(len(bodies), lambda i: _refund(database, tenant, order.id, {
        "external_id": f"RF-{i}", **bodies[i]}).split(":")[1])
    _no_crashes(outcomes)
    assert outcomes["created"] >= 1
    _check_totals(session, order.id)


def test_the_same_refund_at_once_is_recorded_once(database: Database, session: Session,
                                                  tenant: Tenant) -> None:
    order = make_order(session, tenant)
    outcomes = race(6, lambda i: _refund(database, tenant, order.id, {
        "external_id": "RF-1", "lines": [{"position": 1, "quantity": 1}]}))
    _no_crashes(outcomes)
    assert len({o.split(":")[0] for o in outcomes}) == 1
    assert sum(n for o, n in outcomes.items() if o.endswith(":created")) == 1
    final = _check_totals(session, order.id)
    assert final.refunded_minor == NETS[0] // 2
    assert count_rows(session, Refund) == 1
