"""The store dashboard, each figure recomputed from the raw order rows in plain Python."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from omniloop.analytics.dashboard import store_dashboard
from omniloop.analytics.errors import DateRangeInvalid
from omniloop.core.clock import to_local
from omniloop.core.db import Session
from omniloop.orders.models import Order, OrderStatus, RefundLine
from omniloop.tenancy.access import staff_actor, system_actor
from omniloop.tenancy.models import Role
from tests.analytics.factories import (
    END,
    History,
    make_history,
    raw_lines,
    raw_orders,
    survivor_map,
)
from tests.tenancy.factories import fresh, make_tenant

TZ = "Asia/Taipei"


@pytest.fixture
def history(session: Session) -> History:
    return make_history(session, make_tenant(session))


def expected(session: Session, tenant_id: str, start: date, end: date,
             stores: set[str] | None = None) -> dict[str, object]:
    orders = raw_orders(session, tenant_id)
    owners = survivor_map(session, tenant_id)
    first: dict[str, date] = {}
    for o in orders:
        if o.customer_id and o.status != OrderStatus.refunded:
            who = owners[o.customer_id]
            day = to_local(o.paid_at, TZ).date()
            first[who] = min(first.get(who, day), day)
    counted = [o for o in orders if start <= to_local(o.paid_at, TZ).date() <= end
               and o.status != OrderStatus.refunded
               and (stores is None or o.store_id in stores)]
    heat = [[0] * 24 for _ in range(7)]
    channels: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_store: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in counted:
        local = to_local(o.paid_at, TZ)
        heat[local.weekday()][local.hour] += 1
        channels[o.channel.value][0] += 1
        channels[o.channel.value][1] += o.total_minor - o.refunded_minor
        if o.store_id:
            per_store[o.store_id][0] += 1
            per_store[o.store_id][1] += o.total_minor - o.refunded_minor
    people = {owners[o.customer_id] for o in counted if o.customer_id}
    ids = {o.id for o in counted}
    fresh(session)
    refunded: dict[str, int] = defaultdict(int)
    for line_id, amount in session.execute(select(RefundLine.line_id, RefundLine.amount_minor)
                                           .where(RefundLine.tenant_id == tenant_id)).all():
        refunded[line_id] += amount
    products: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    categories: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in raw_lines(session, tenant_id):
        if line.order_id in ids:
            for bucket in (products[line.sku], categories[line.category]):
                bucket[0] += line.quantity - line.refunded_quantity
                bucket[1] += line.net_minor - refunded[line.id]
    return {
        "orders": len(counted),
        "sales": sum(o.total_minor - o.refunded_minor for o in counted),
        "new": sum(1 for p in people if first[p] >= start),
        "returning": sum(1 for p in people if first[p] < start),
        "walk_in": sum(1 for o in counted if o.customer_id is None),
        "heat": heat,
        "channels": {k: tuple(v) for k, v in channels.items()},
        "stores": {k: tuple(v) for k, v in per_store.items()},
        "products": {k: tuple(v) for k, v in products.items()},
        "categories": {k: tuple(v) for k, v in categories.items()},
    }


@pytest.mark.parametrize(("days", "offset"), [(30, 0), (120, 10), (731, 0)])
def test_every_figure_equals_the_raw_rows(session: Session, history: History, days: int,
                                          offset: int) -> None:
    end = END - timedelta(days=offset)
    start = end - timedelta(days=days - 1)
    board = store_dashboard(session, system_actor(history.tenant.id), start, end)
    want = expected(session, history.tenant.id, start, end)
    assert board.orders == want["orders"]
    assert board.orders > 0
    assert board.sales_minor == want["sales"]
    assert board.average_order_minor == round(board.sales_minor / board.orders)
    assert (board.new_customers, board.returning_customers) == (want["new"], want["returning"])
    assert board.walk_in_orders == want["walk_in"]
    assert board.heatmap == want["heat"]
    assert board.by_channel == want["channels"]
    assert {r.store_id: (r.orders, r.sales_minor) for r in board.stores} == want["stores"]
    products = want["products"]
    assert isinstance(products, dict)
    top = sorted(products.items(), key=lambda kv: (-kv[1][1], kv[0]))[:10]
    assert [(p.key, p.units, p.sales_minor) for p in board.products] == [
        (k, u, s) for k, (u, s) in top]
    assert {c.key: (c.units, c.sales_minor) for c in board.categories} == want["categories"]
    assert sum(n for _, n, _ in board.days) == board.orders
    assert sum(s for _, _, s in board.days) == board.sales_minor
    assert len(board.days) == days


def test_one_store_and_a_store_manager_see_their_stores(session: Session,
                                                       history: History) -> None:
    start, end = END - timedelta(days=200), END
    store = history.stores[1]
    one = store_dashboard(session, system_actor(history.tenant.id), start, end, store.id)
    want = expected(session, history.tenant.id, start, end, {store.id})
    assert (one.orders, one.sales_minor) == (want["orders"], want["sales"])
    assert set(one.by_channel) == {"store"}
    manager = staff_actor(history.tenant.id, "m", "manager", Role.store_manager,
                          frozenset({store.id}))
    theirs = store_dashboard(session, manager, start, end)
    assert theirs.store_scoped
    assert (theirs.orders, theirs.sales_minor) == (one.orders, one.sales_minor)
    # Another store's id is not theirs to ask for: they get their own view.
    other = store_dashboard(session, manager, start, end, history.stores[0].id)
    assert other.store_id is None
    assert other.orders == one.orders


def test_empty_range_and_bad_ranges(session: Session, history: History) -> None:
    actor = system_actor(history.tenant.id)
    empty = store_dashboard(session, actor, date(2020, 1, 1), date(2020, 1, 31))
    assert empty.orders == 0
    assert empty.average_order_minor is None
    with pytest.raises(DateRangeInvalid):
        store_dashboard(session, actor, END, END - timedelta(days=1))
    with pytest.raises(DateRangeInvalid):
        store_dashboard(session, actor, END - timedelta(days=800), END)


def test_other_brands_orders_never_count(session: Session, history: History) -> None:
    other = make_tenant(session)
    board = store_dashboard(session, system_actor(other.id), END - timedelta(days=365), END)
    assert board.orders == 0
    assert session.scalar(select(Order.id).where(Order.tenant_id == other.id)) is None
