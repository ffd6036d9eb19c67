"""The store dashboard: sales, orders, average order value, new vs returning, online vs
offline, hot products and categories, the hour × weekday heatmap, per store and brand-wide.

Definitions (one each, docs/analytics.md):

* the **range** is from `start` to `end`, both days included, in the brand's time zone;
* an order counts in the range when it was paid in it and is not refunded in full;
  **sales** are what those orders brought in after refunds (`total_minor − refunded_minor`),
  **orders** their number, **average order value** sales ÷ orders;
* a customer who bought in the range is **new** when their first order with the brand (any
  store, any channel, merged profiles together) falls in the range, else **returning**;
  walk-ins (no customer) are neither;
* **online / offline**: the order's channel (`online`, `store`);
* **hot products / categories**: units sold (quantity less units returned) and line sales
  (the line's net amount less the amounts refunded for it) of the counted orders;
* the **heatmap** counts the orders by local weekday and hour of payment.

A store-bound actor (store manager) sees their stores only, and no online orders (those
belong to no store). Figures are computed from the rows of the range each time: the demo
brand's 18 months take well under the 500 ms page budget (docs/benchmarks.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select

from omniloop.analytics.errors import DateRangeInvalid
from omniloop.analytics.rfm import day_end_utc, merged_and_erased
from omniloop.core.clock import to_local
from omniloop.core.db import Session
from omniloop.orders.models import Order, OrderChannel, OrderLine, OrderStatus, RefundLine
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import list_stores
from omniloop.tenancy.tenants import get_tenant

MAX_RANGE_DAYS = 731
TOP = 10


def check_range(start: date, end: date) -> None:
    if start > end or (end - start).days + 1 > MAX_RANGE_DAYS:
        raise DateRangeInvalid(field="start", days=MAX_RANGE_DAYS)


@dataclass(frozen=True)
class ProductRow:
    key: str       # SKU or category
    name: str
    units: int
    sales_minor: int


@dataclass(frozen=True)
class StoreRow:
    store_id: str
    name: str
    orders: int
    sales_minor: int


@dataclass
class Dashboard:
    start: date
    end: date
    store_id: str | None
    currency: str
    timezone: str
    store_scoped: bool
    orders: int = 0
    sales_minor: int = 0
    new_customers: int = 0
    returning_customers: int = 0
    walk_in_orders: int = 0
    by_channel: dict[str, tuple[int, int]] = field(default_factory=dict)  # orders, sales
    products: list[ProductRow] = field(default_factory=list)
    categories: list[ProductRow] = field(default_factory=list)
    stores: list[StoreRow] = field(default_factory=list)
    heatmap: list[list[int]] = field(default_factory=list)  # [weekday 0=Mon][hour]
    days: list[tuple[date, int, int]] = field(default_factory=list)  # day, orders, sales

    @property
    def average_order_minor(self) -> int | None:
        return round(self.sales_minor / self.orders) if self.orders else None


def _order_filter(actor: Actor, start_utc: datetime, end_utc: datetime,
                  store_id: str | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        Order.tenant_id == actor.tenant_id, Order.paid_at >= start_utc, Order.paid_at < end_utc,
        Order.status != OrderStatus.refunded]
    if store_id is not None:
        where.append(Order.store_id == store_id)
    if actor.store_ids is not None:
        where.append(Order.store_id.in_(actor.store_ids))
    return where


def store_dashboard(session: Session, actor: Actor, start: date, end: date,
                    store_id: str | None = None) -> Dashboard:
    """Every figure of the dashboard for the range, one store or all the actor may see."""
    actor.require(Permission.campaigns_read)
    check_range(start, end)
    tenant = get_tenant(session, actor.tenant_id)
    stores = {s.id: s for s in list_stores(session, actor)}
    if store_id is not None and store_id not in stores:
        store_id = None  # an unknown or hidden store: the actor's whole view
    start_utc = day_end_utc(start - timedelta(days=1), tenant.timezone)
    end_utc = day_end_utc(end, tenant.timezone)
    where = _order_filter(actor, start_utc, end_utc, store_id)
    board = Dashboard(start=start, end=end, store_id=store_id, currency=tenant.currency,
                      timezone=tenant.timezone, store_scoped=actor.store_ids is not None,
                      heatmap=[[0] * 24 for _ in range(7)])

    rows = session.execute(select(Order.paid_at, Order.channel, Order.store_id,
                                  Order.customer_id, Order.total_minor - Order.refunded_minor)
                           .where(*where)).all()
    per_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    per_store: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_channel: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    buyers: set[str] = set()
    for paid_at, channel, order_store, customer_id, net in rows:
        local = to_local(paid_at, tenant.timezone)
        board.orders += 1
        board.sales_minor += net
        board.heatmap[local.weekday()][local.hour] += 1
        for bucket in (per_day[local.date()], per_channel[OrderChannel(channel).value]):
            bucket[0] += 1
            bucket[1] += net
        if order_store is not None:
            per_store[order_store][0] += 1
            per_store[order_store][1] += net
        if customer_id is None:
            board.walk_in_orders += 1
        else:
            buyers.add(customer_id)
    board.by_channel = {c: (v[0], v[1]) for c, v in sorted(per_channel.items())}
    for i in range((end - start).days + 1):
        day = start + timedelta(days=i)
        orders_on, sales_on = per_day.get(day, [0, 0])
        board.days.append((day, orders_on, sales_on))
    board.stores = sorted((StoreRow(store_id=sid, name=stores[sid].name if sid in stores
                                    else sid, orders=v[0], sales_minor=v[1])
                           for sid, v in per_store.items()),
                          key=lambda row: (-row.sales_minor, row.name))

    # New or returning: the first order of each buyer's person, brand-wide.
    if buyers:
        survivor, _ = merged_and_erased(session, actor.tenant_id)
        people = {survivor.get(c, c) for c in buyers}
        profiles = buyers | people | {m for m, s in survivor.items() if s in people}
        first: dict[str, datetime] = {}
        for customer_id, first_paid in session.execute(
                select(Order.customer_id, func.min(Order.paid_at))
                .where(Order.tenant_id == actor.tenant_id, Order.customer_id.in_(profiles),
                       Order.status != OrderStatus.refunded)
                .group_by(Order.customer_id)).all():
            if customer_id is None:
                continue
            person = survivor.get(customer_id, customer_id)
            stamp = to_local(first_paid, tenant.timezone)
            if person not in first or stamp < first[person]:
                first[person] = stamp
        for person in people:
            if first[person].date() >= start:
                board.new_customers += 1
            else:
                board.returning_customers += 1

    # Products and categories: units and line sales after returns.
    refunded_line = (select(RefundLine.line_id, func.sum(RefundLine.amount_minor).label("amount"))
                     .where(RefundLine.tenant_id == actor.tenant_id)
                     .group_by(RefundLine.line_id).subquery())
    line_rows = session.execute(
        select(OrderLine.sku, OrderLine.name, OrderLine.category,
               OrderLine.quantity - OrderLine.refunded_quantity,
               OrderLine.net_minor - func.coalesce(refunded_line.c.amount, 0))
        .join(Order, and_(Order.tenant_id == OrderLine.tenant_id,
                          Order.id == OrderLine.order_id))
        .outerjoin(refunded_line, refunded_line.c.line_id == OrderLine.id)
        .where(OrderLine.tenant_id == actor.tenant_id, *where)).all()
    products: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    names: dict[str, str] = {}
    categories: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sku, name, category, units, sales in line_rows:
        names.setdefault(sku, name)
        for bucket in (products[sku], categories[category or ""]):
            bucket[0] += int(units)
            bucket[1] += int(sales)
    board.products = sorted((ProductRow(key=k, name=names[k], units=v[0], sales_minor=v[1])
                             for k, v in products.items()),
                            key=lambda r: (-r.sales_minor, r.key))[:TOP]
    board.categories = sorted((ProductRow(key=k, name=k, units=v[0], sales_minor=v[1])
                               for k, v in categories.items()),
                              key=lambda r: (-r.sales_minor, r.key))[:TOP]
    return board


def order_span(session: Session, actor: Actor) -> tuple[date, date] | None:
    """The first and last local day with an order the actor may see (None: no orders)."""
    actor.require(Permission.campaigns_read)
    tenant = get_tenant(session, actor.tenant_id)
    where: list[ColumnElement[bool]] = [Order.tenant_id == actor.tenant_id]
    if actor.store_ids is not None:
        where.append(Order.store_id.in_(actor.store_ids))
    first, last = session.execute(select(func.min(Order.paid_at), func.max(Order.paid_at))
                                  .where(*where)).one()
    if first is None or last is None:
        return None
    return (to_local(first, tenant.timezone).date(), to_local(last, tenant.timezone).date())
