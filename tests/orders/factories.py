"""Small factories and checks for orders tests. Factories commit, as a real request would."""

from __future__ import annotations

from itertools import count
from typing import Any

from sqlalchemy import func, select

from omniloop.core.db import Session
from omniloop.customers.models import Customer, CustomerIdentity, CustomerMerge, Event
from omniloop.orders import service
from omniloop.orders.models import Order, OrderLine, Refund, RefundLine
from omniloop.orders.schemas import OrderIn
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.models import AuditEntry, Tenant
from tests.tenancy.factories import fresh

_seq = count(1)

PAID_AT = "2026-11-20T12:30:00+08:00"
# Two lines and an order discount: 2 × 130 − 10 = 250 and 1 × 80 = 80, subtotal 330,
# total 300. The NT$30 order discount splits 22.73 / 7.27 in proportion to 250 / 80.
LINES: list[dict[str, Any]] = [
    {"sku": "CF-LATTE", "name": "拿鐵", "category": "咖啡", "quantity": 2,
     "unit_price_minor": 13000, "discount_minor": 1000},
    {"sku": "DS-BASQUE", "name": "巴斯克乳酪蛋糕", "category": "甜點", "quantity": 1,
     "unit_price_minor": 8000},
]
TOTAL = 30000
NETS = [22727, 7273]

TABLES: tuple[type[Any], ...] = (Order, OrderLine, Refund, RefundLine, Event, Customer,
                                  CustomerIdentity, CustomerMerge, AuditEntry)


def order_body(external_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A JSON body for POST /orders: an online order of the two standard lines."""
    body: dict[str, Any] = {
        "external_id": f"EXT-{next(_seq):05d}" if external_id is None else external_id,
        "source": "pos", "lines": [dict(line) for line in LINES], "discount_minor": 3000,
        "paid_at": PAID_AT}
    body.update(fields)
    return body


def make_order(session: Session, tenant: Tenant, actor: Actor | None = None,
               **fields: Any) -> Order:
    fresh(session)  # a read begun earlier would make this write fail on SQLite
    order, created = service.ingest_order(session, actor or system_actor(tenant.id),
                                          OrderIn.model_validate(order_body(**fields)))
    assert created
    session.commit()
    return order


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the orders module (and what it calls) may write, to compare before/after."""
    fresh(session)
    state: dict[str, list[tuple[Any, ...]]] = {}
    for model in TABLES:
        table = model.__table__
        rows = session.execute(select(table).order_by(*table.primary_key.columns)).all()
        state[table.name] = [tuple(row) for row in rows]
    return state


def count_rows(session: Session, model: type[Any], *where: Any) -> int:
    fresh(session)
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0
