"""The points ledger: earning on orders, refunds, redemption, expiry — exact, once, never
below zero, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.core.errors import OmniloopError
from omniloop.loyalty.earning import earn_for_order
from omniloop.loyalty.errors import (
    BelowMinimumRedemption,
    InsufficientPoints,
    PointsInvalid,
    ReasonRequired,
    RedeemShareExceeded,
)
from omniloop.loyalty.ledger import (
    adjust_points,
    balance_of,
    expire_due,
    expiring_soon,
    redeem_points,
)
from omniloop.loyalty.models import EntryKind, PointsEntry
from omniloop.loyalty.program import get_program, points_for, stored_program
from omniloop.orders.models import Order
from omniloop.orders.refunds import refund
from omniloop.orders.schemas import OrderIn, RefundIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.tenancy.factories import fresh, make_tenant
from tests.tenancy.test_concurrency import race

PHONE = "0912-345-678"
NOW = utcnow().replace(microsecond=0)


@pytest.fixture
def tenant(session: Session) -> Tenant:
    """A brand earning 1 point per NT$1, so the arithmetic reads plainly."""
    tenant = make_tenant(session)
    fresh(session)
    program = stored_program(session, tenant.id)
    program.earn_unit_minor = 100
    session.commit()
    return tenant


def order(session: Session, tenant: Tenant, external_id: str, total_minor: int,
          days_ago: int = 1) -> Order:
    fresh(session)
    placed, _ = ingest_order(session, system_actor(tenant.id), OrderIn.model_validate({
        "external_id": external_id, "identities": [{"kind": "phone", "value": PHONE}],
        "lines": [{"sku": "CF-LATTE", "quantity": 1, "unit_price_minor": total_minor}],
        "paid_at": (NOW - timedelta(days=days_ago)).isoformat()}))
    session.commit()
    return placed


def entries(session: Session, tenant: Tenant, customer_id: str) -> list[PointsEntry]:
    fresh(session)
    return list(session.scalars(select(PointsEntry).where(
        PointsEntry.tenant_id == tenant.id, PointsEntry.customer_id == customer_id)
        .order_by(PointsEntry.created_at, PointsEntry.id)))


def assert_consistent(session: Session, tenant: Tenant, customer_id: str) -> int:
    """The running balance, the ledger's sum and the open lots must agree."""
    rows = entries(session, tenant, customer_id)
    balance = balance_of(session, tenant.id, customer_id)
    assert balance == sum(e.points for e in rows)
    assert balance == sum(e.remaining for e in rows if e.lot_open)
    assert balance >= 0
    return balance


def test_points_for_follows_the_rounding_rule(session: Session, tenant: Tenant) -> None:
    program = get_program(session, tenant.id)
    program.earn_unit_minor = 10000
    assert points_for(program, 19999) == 1
    program.rounding = "nearest"  # type: ignore[assignment]
    assert points_for(program, 15000) == 2
    assert points_for(program, 14999) == 1
    program.rounding = "up"  # type: ignore[assignment]
    assert points_for(program, 10001) == 2
    assert points_for(program, 30000, multiplier_bp=12500) == 3  # 3.75 rounds down
    session.rollback()


def test_an_order_earns_once_however_often_it_is_sent(session: Session, tenant: Tenant) -> None:
    placed = order(session, tenant, "A-1", 30000)
    assert placed.customer_id is not None
    again = order(session, tenant, "A-1", 30000)
    assert again.id == placed.id
    fresh(session)
    earn_for_order(session, system_actor(tenant.id), placed)  # a listener run twice
    session.commit()
    rows = entries(session, tenant, placed.customer_id)
    assert [(e.kind, e.points) for e in rows] == [(EntryKind.earn, 300)]
    assert assert_consistent(session, tenant, placed.customer_id) == 300


def test_earn_partial_refund_redeem_full_refund_is_exact(session: Session,
                                                         tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    placed = order(session, tenant, "B-1", 30000)
    customer = placed.customer_id
    assert customer is not None
    fresh(session)
    refund(session, actor, placed.id, RefundIn(external_id="R-1", amount_minor=10000))
    session.commit()
    assert assert_consistent(session, tenant, customer) == 200
    fresh(session)
    spent = redeem_points(session, actor, customer, 150, order_total_minor=100000, key="pos-1")
    session.commit()
    assert spent.discount_minor == 15000
    assert assert_consistent(session, tenant, customer) == 50
    fresh(session)
    refund(session, actor, placed.id, RefundIn(external_id="R-2"))  # the rest
    session.commit()
    rows = entries(session, tenant, customer)
    assert [(e.kind, e.points, e.unrecovered) for e in rows] == [
        (EntryKind.earn, 300, 0), (EntryKind.reversal, -100, 0), (EntryKind.redeem, -150, 0),
        (EntryKind.reversal, -50, 150)]
    assert assert_consistent(session, tenant, customer) == 0


def test_expiry_consumes_the_oldest_lots_first(session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    old = order(session, tenant, "C-1", 10000, days_ago=400)  # 100 points, long expired
    order(session, tenant, "C-2", 5000, days_ago=20)  # 50 points
    customer = old.customer_id
    assert customer is not None
    fresh(session)
    redeem_points(session, actor, customer, 30, order_total_minor=100000, key="pos-c")
    session.commit()
    rows = entries(session, tenant, customer)
    assert [e.remaining for e in rows if e.kind == EntryKind.earn] == [70, 50]
    fresh(session)
    assert expire_due(session, actor) == 1
    assert expire_due(session, actor) == 0  # running again changes nothing
    session.commit()
    rows = entries(session, tenant, customer)
    assert [(e.kind, e.points) for e in rows][-1] == (EntryKind.expire, -70)
    assert assert_consistent(session, tenant, customer) == 50


def test_points_expiring_within_30_days_are_listed(session: Session, tenant: Tenant) -> None:
    placed = order(session, tenant, "D-1", 4000, days_ago=350)
    fresh(session)
    soon = expiring_soon(session, tenant.id)
    assert [(c, p) for c, p, _ in soon] == [(placed.customer_id, 40)]


def test_bad_input_is_refused_and_writes_nothing(session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    placed = order(session, tenant, "E-1", 10000)
    customer = placed.customer_id
    assert customer is not None
    attempts: list[tuple[type[OmniloopError], Any]] = [
        (PointsInvalid, lambda s: redeem_points(s, actor, customer, -5,
                                                 order_total_minor=100000, key="x1")),
        (InsufficientPoints, lambda s: redeem_points(s, actor, customer, 101,
                                                     order_total_minor=100000, key="x2")),
        (RedeemShareExceeded, lambda s: redeem_points(s, actor, customer, 60,
                                                      order_total_minor=10000, key="x3")),
        (BelowMinimumRedemption, lambda s: redeem_points(s, actor, customer, 5,
                                                         order_total_minor=100000, key="x4")),
        (ReasonRequired, lambda s: adjust_points(s, actor, customer, 10, " ", key="x5")),
        (InsufficientPoints, lambda s: adjust_points(s, actor, customer, -500, "typo",
                                                     key="x6")),
    ]
    for error, call in attempts:
        fresh(session)
        with pytest.raises(error):
            call(session)
        session.rollback()
    rows = entries(session, tenant, customer)
    assert [e.kind for e in rows] == [EntryKind.earn]
    assert assert_consistent(session, tenant, customer) == 100


def test_adjustments_need_a_reason_and_are_audited(session: Session, tenant: Tenant) -> None:
    from omniloop.tenancy.models import AuditEntry

    placed = order(session, tenant, "F-1", 10000)
    customer = placed.customer_id
    assert customer is not None
    fresh(session)
    adjust_points(session, system_actor(tenant.id), customer, -40, "duplicate earn", key="a1")
    adjust_points(session, system_actor(tenant.id), customer, 15, "goodwill", key="a2")
    session.commit()
    assert assert_consistent(session, tenant, customer) == 75
    fresh(session)
    logged = session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.tenant_id == tenant.id, AuditEntry.action == "points.adjust"))
    assert logged == 2


def test_concurrent_redemptions_never_overdraw(database: Database, session: Session,
                                               tenant: Tenant) -> None:
    placed = order(session, tenant, "G-1", 10000)  # 100 points
    customer = placed.customer_id
    assert customer is not None

    def spend(index: int) -> str:
        with database.unit_of_work() as s:
            redeem_points(s, system_actor(tenant.id), customer, 30, order_total_minor=100000,
                          key=f"race-{index}")
        return "spent"

    outcomes = race(16, spend)
    assert outcomes == Counter({"spent": 3, "insufficient_points": 13})
    assert assert_consistent(session, tenant, customer) == 10


def test_the_same_earn_applied_concurrently_earns_once(database: Database, session: Session,
                                                       tenant: Tenant) -> None:
    placed = order(session, tenant, "H-1", 10000)
    customer = placed.customer_id
    assert customer is not None

    def earn(_: int) -> str:
        with database.unit_of_work() as s:
            again = s.get(Order, (tenant.id, placed.id))
            assert again is not None
            earn_for_order(s, system_actor(tenant.id), again)
        return "ok"

    assert race(8, earn) == Counter({"ok": 8})
    assert assert_consistent(session, tenant, customer) == 100
    assert len(entries(session, tenant, customer)) == 1
