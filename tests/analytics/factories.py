"""A small, seeded purchase history for analytics tests, written through the services.

Customers buy in stores and online over ~200 days before `END`, some a lot and some once,
with partial and full refunds, a walk-in (no customer) and a merged pair of profiles, so the
analytics meet every case their definitions name. Tests recompute each figure from the raw
rows (`raw_orders`) with plain Python and compare.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.customers.identify import identify
from omniloop.customers.models import Customer, IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.orders import refunds, service
from omniloop.orders.models import Order, OrderLine
from omniloop.orders.schemas import OrderIn, RefundIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Store, Tenant
from tests.tenancy.factories import fresh, make_store

TAIPEI = ZoneInfo("Asia/Taipei")
END = date(2026, 11, 20)
PRODUCTS = [("CF-LATTE", "拿鐵", "咖啡", 13000), ("CF-AMER", "美式", "咖啡", 9000),
            ("TE-OOLONG", "烏龍", "茶飲", 8000), ("DS-BASQUE", "巴斯克", "甜點", 12000),
            ("BN-HOUSE", "豆子", "咖啡豆", 45000)]


@dataclass
class History:
    tenant: Tenant
    stores: list[Store]
    customers: list[str]  # the profiles orders were placed on (a merged one included)


def phone(i: int) -> str:
    return f"+8869{i:08d}"


def make_history(session: Session, tenant: Tenant, *, customers: int = 30,
                 seed: int = 7) -> History:
    rng = random.Random(seed)
    actor = system_actor(tenant.id)
    stores = [make_store(session, tenant, code=f"S{tenant.slug[-3:]}{i}", name=f"店 {i}")
              for i in range(3)]
    fresh(session)
    ids: list[str] = []
    n = 0
    for c in range(customers):
        who = identify(session, actor, [IdentityIn(kind=IdentityKind.phone, value=phone(c))])
        ids.append(who.customer.id)
        orders = 1 if c % 3 == 0 else rng.randint(2, 9)
        last_day = rng.randint(0, 200)
        for _ in range(orders):
            n += 1
            day = END - timedelta(days=last_day + rng.randint(0, 150))
            when = datetime.combine(day, time(rng.randint(7, 20), rng.randint(0, 59)),
                                    tzinfo=TAIPEI)
            online = rng.random() < 0.3
            lines = []
            for sku, name, category, price in rng.sample(PRODUCTS, rng.randint(1, 3)):
                lines.append({"sku": sku, "name": name, "category": category,
                              "quantity": rng.randint(1, 3), "unit_price_minor": price})
            body = {"external_id": f"H-{n:05d}", "source": "pos", "lines": lines,
                    "customer_id": who.customer.id, "paid_at": when.isoformat()}
            if not online:
                body["store_id"] = rng.choice(stores).id
            order, _ = service.ingest_order(session, actor, OrderIn.model_validate(body))
            if n % 11 == 0:
                refunds.refund(session, actor, order.id, RefundIn(
                    external_id=f"R-{n}", amount_minor=order.total_minor // 3,
                    refunded_at=when + timedelta(days=1)))
            elif n % 17 == 0:
                refunds.refund(session, actor, order.id, RefundIn(
                    external_id=f"R-{n}", amount_minor=order.total_minor,
                    refunded_at=when + timedelta(days=1)))
    # A walk-in, and an order after END (must not count as of END).
    service.ingest_order(session, actor, OrderIn.model_validate({
        "external_id": "WALKIN", "source": "pos", "store_id": stores[0].id,
        "lines": [{"sku": "CF-AMER", "name": "美式", "quantity": 1, "unit_price_minor": 9000}],
        "paid_at": datetime.combine(END, time(9), tzinfo=TAIPEI).isoformat()}))
    service.ingest_order(session, actor, OrderIn.model_validate({
        "external_id": "LATE", "source": "pos", "customer_id": ids[1],
        "lines": [{"sku": "CF-AMER", "name": "美式", "quantity": 1, "unit_price_minor": 9000}],
        "paid_at": datetime.combine(END + timedelta(days=1), time(0, 30),
                                    tzinfo=TAIPEI).isoformat()}))
    # Customers 1 and 2 turn out to be one person: an e-mail known on both merges them.
    identify(session, actor, [IdentityIn(kind=IdentityKind.phone, value=phone(1)),
                              IdentityIn(kind=IdentityKind.email, value="one@example.com")])
    identify(session, actor, [IdentityIn(kind=IdentityKind.phone, value=phone(2)),
                              IdentityIn(kind=IdentityKind.email, value="one@example.com")])
    session.commit()
    return History(tenant=tenant, stores=stores, customers=ids)


def raw_orders(session: Session, tenant_id: str) -> list[Order]:
    fresh(session)
    return list(session.scalars(select(Order).where(Order.tenant_id == tenant_id)))


def raw_lines(session: Session, tenant_id: str) -> list[OrderLine]:
    fresh(session)
    return list(session.scalars(select(OrderLine).where(OrderLine.tenant_id == tenant_id)))


def survivor_map(session: Session, tenant_id: str) -> dict[str, str]:
    fresh(session)
    merged = dict(session.execute(select(Customer.id, Customer.merged_into_id).where(
        Customer.tenant_id == tenant_id)).all())
    result = {}
    for start in merged:
        current = start
        while merged.get(current):
            current = merged[current]  # type: ignore[assignment]
        result[start] = current
    return result
