"""Tables of the analytics module: RFM snapshots and saved segments.

Scores are computed from orders whenever they are asked for; a **snapshot** keeps one scoring
(as of a date) per customer so that a later one can be compared with it ("who moved from
Loyal to At risk"). A **saved segment** is a definition (a name and some RFM groups) with
its members materialised when it is saved or refreshed, so a campaign or a message sent
later reaches exactly the people the marketer saw, not whoever matches on the day it goes out.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.db import Base, created_at_column, id_column
from omniloop.orders.models import Order
from omniloop.tenancy.models import tenant_fk

# RFM reads, per customer, the last payment time, the number of orders and their net amount,
# with one GROUP BY over the brand's orders. With every column it reads in one index, SQLite
# answers from the index alone, already in customer order, instead of looking each order up
# in the table and sorting: 0.44 s instead of 1.8 s for a million orders (bench_analytics.py).
# Declared here, the analytics module's own read path; the cost is one more index entry per
# order written.
RFM_ORDERS_INDEX = Index(
    "ix_orders_tenant_id_customer_id_rfm", Order.tenant_id, Order.customer_id, Order.paid_at,
    Order.status, Order.total_minor, Order.refunded_minor)


class CustomerOrderTotal(Base):
    """Per customer profile: what RFM needs of its orders, kept current as they are written.

    Maintained in the transaction that records an order or a refund (`analytics.totals`,
    registered in `omniloop.wiring`), so RFM as of today reads one row per customer instead of
    every order. Counts orders not refunded in full, their net amount after refunds, and the
    latest payment among them. Keyed by the profile the orders arrived on, like orders
    themselves; merges are resolved when read.
    """

    __tablename__ = "customer_order_totals"
    __table_args__ = (
        CheckConstraint("orders >= 0", name="orders_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    # Seconds since 1970 (UTC) of the latest payment: a plain integer that RFM reads for a
    # million customers without converting a timestamp per row. None: no order counts.
    last_paid_epoch: Mapped[int | None] = mapped_column(BigInteger)


class RfmSnapshot(Base):
    __tablename__ = "rfm_snapshots"
    __table_args__ = (
        Index("ix_rfm_snapshots_tenant_id_as_of", "tenant_id", "as_of"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    as_of: Mapped[date] = mapped_column(Date)  # scored on orders up to this day, included
    customers: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = created_at_column()


class RfmSnapshotMember(Base):
    __tablename__ = "rfm_snapshot_members"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "snapshot_id"],
                             ["rfm_snapshots.tenant_id", "rfm_snapshots.id"],
                             ondelete="CASCADE"),
        Index("ix_rfm_snapshot_members_tenant_id_snapshot_id_segment", "tenant_id",
              "snapshot_id", "segment"),
        CheckConstraint("r BETWEEN 1 AND 5 AND f BETWEEN 1 AND 5 AND m BETWEEN 1 AND 5",
                        name="scores_1_to_5"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    snapshot_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    recency_days: Mapped[int] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    monetary_minor: Mapped[int] = mapped_column(BigInteger)
    r: Mapped[int] = mapped_column(SmallInteger)
    f: Mapped[int] = mapped_column(SmallInteger)
    m: Mapped[int] = mapped_column(SmallInteger)
    segment: Mapped[str] = mapped_column(String(24))


class SavedSegment(Base):
    __tablename__ = "saved_segments"

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(120))
    rfm_segments: Mapped[list[str]] = mapped_column()  # RFM group keys, e.g. ["at_risk"]
    as_of: Mapped[date] = mapped_column(Date)  # the day its members were last scored on
    members: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = created_at_column()
    refreshed_at: Mapped[datetime] = created_at_column()


class SavedSegmentMember(Base):
    __tablename__ = "saved_segment_members"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "segment_id"],
                             ["saved_segments.tenant_id", "saved_segments.id"],
                             ondelete="CASCADE"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    segment_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
