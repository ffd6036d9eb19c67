"""Per-customer order totals, kept current in the transaction that records an order or a
refund, so that RFM as of today reads one row per customer instead of every order.

What a row holds is exactly what `rfm.rfm_inputs` would aggregate from the orders of that
profile: the orders not refunded in full, their net amount after refunds, and the latest
payment among them. The listeners only add and subtract (`INSERT … ON CONFLICT DO UPDATE`,
`UPDATE … SET orders = orders − 1`), which concurrent transactions cannot lose, on SQLite and
PostgreSQL alike. When a refund empties an order, the latest payment is taken again from the
profile's remaining orders.

`rebuild_totals` recomputes the rows of a brand from its orders: the migration that created
the table did the same for the orders already there, and the benchmark, whose orders are
written by SQL without the services, calls it after loading.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from omniloop.analytics.models import CustomerOrderTotal
from omniloop.analytics.rfm import epoch_seconds
from omniloop.core.clock import as_utc
from omniloop.core.db import Session
from omniloop.core.prepared import Prepared
from omniloop.orders.models import Order, OrderStatus, Refund
from omniloop.tenancy.access import Actor

_TOTALS = cast(Table, CustomerOrderTotal.__table__)


def _order_upsert(dialect: str) -> Insert:
    """One more order for a profile's row, inserting the row if it is the first: built once
    per dialect (every recorded order runs it)."""
    upsert: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        upsert = postgresql.insert(_TOTALS)
        later_paid = func.greatest(_TOTALS.c.last_paid_epoch, upsert.excluded.last_paid_epoch)
    else:
        upsert = sqlite.insert(_TOTALS)
        # SQLite's two-argument max() is NULL if either is: a row emptied by refunds has no
        # last payment.
        later_paid = func.max(func.coalesce(_TOTALS.c.last_paid_epoch,
                                            upsert.excluded.last_paid_epoch),
                              upsert.excluded.last_paid_epoch)
    return upsert.on_conflict_do_update(
        index_elements=["tenant_id", "customer_id"],
        set_={"orders": _TOTALS.c.orders + upsert.excluded.orders,
              "net_minor": _TOTALS.c.net_minor + upsert.excluded.net_minor,
              "last_paid_epoch": later_paid})


_ORDER_UPSERT_COLUMNS = ("tenant_id", "customer_id", "orders", "net_minor", "last_paid_epoch")
# Prepared: SQLAlchemy's own execution of the cached statement cost more than SQLite's.
_ORDER_UPSERTS = {dialect: Prepared(_order_upsert(dialect), columns=_ORDER_UPSERT_COLUMNS)
                  for dialect in ("postgresql", "sqlite")}


def record_order(session: Session, actor: Actor, order: Order) -> None:
    """An order was recorded: one more order, its net amount, maybe a later payment."""
    customer_id = order.customer_id
    if customer_id is None or order.status == OrderStatus.refunded:
        return
    _ORDER_UPSERTS[session.connection().dialect.name].run(session, {
        "tenant_id": order.tenant_id, "customer_id": customer_id, "orders": 1,
        "net_minor": order.total_minor - order.refunded_minor,
        "last_paid_epoch": int(as_utc(order.paid_at).timestamp())})


def record_refund(session: Session, actor: Actor, order: Order, refund: Refund) -> None:
    """A refund was recorded: less net amount; an order refunded in full no longer counts."""
    if order.customer_id is None:
        return
    # The refund moved the order's counters with an UPDATE that the loaded `order` object
    # does not reflect: the status is read as it is now, inside the one UPDATE.
    emptied = select(Order.status).where(
        Order.tenant_id == order.tenant_id, Order.id == order.id
    ).scalar_subquery() == OrderStatus.refunded
    last_paid = (
        select(epoch_seconds(session, func.max(Order.paid_at)))
        .where(Order.tenant_id == order.tenant_id, Order.customer_id == order.customer_id,
               Order.status != OrderStatus.refunded)
        .scalar_subquery())
    session.execute(update(CustomerOrderTotal).where(
        CustomerOrderTotal.tenant_id == order.tenant_id,
        CustomerOrderTotal.customer_id == order.customer_id).values(
            net_minor=CustomerOrderTotal.net_minor - refund.amount_minor,
            orders=CustomerOrderTotal.orders - case((emptied, 1), else_=0),
            last_paid_epoch=case((emptied, last_paid),
                                 else_=CustomerOrderTotal.last_paid_epoch))
        .execution_options(synchronize_session=False))


def rebuild_totals(session: Session, tenant_id: str) -> int:
    """Recompute every row of a brand from its orders; returns the number of rows."""
    session.execute(delete(CustomerOrderTotal).where(
        CustomerOrderTotal.tenant_id == tenant_id))
    result = session.execute(insert(CustomerOrderTotal).from_select(
        ["tenant_id", "customer_id", "orders", "net_minor", "last_paid_epoch"],
        select(Order.tenant_id, Order.customer_id, func.count(),
               func.sum(Order.total_minor - Order.refunded_minor),
               epoch_seconds(session, func.max(Order.paid_at)))
        .where(Order.tenant_id == tenant_id, Order.customer_id.is_not(None),
               Order.status != OrderStatus.refunded)
        .group_by(Order.tenant_id, Order.customer_id)))
    return int(getattr(result, "rowcount", 0) or 0)
