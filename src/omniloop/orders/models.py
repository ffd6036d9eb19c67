"""Tables of the orders module.

Money is integer minor units of the brand's currency (TWD: NT$120 is 12000). For an order:

* a line's `total_minor` is quantity × unit price − the line's own discount;
* the order's `subtotal_minor` is the sum of its lines' totals, `discount_minor` the
  order-level discount on top, and `total_minor` = subtotal − discount: what was paid;
* a line's `net_minor` is its total less its share of the order-level discount (shared in
  proportion to line totals, remainders to the largest fractions), so the lines' net amounts
  add up to the order total exactly. Refunds by line are priced from it.

`refunded_minor` only grows, through a conditional UPDATE that keeps it ≤ `total_minor`;
each refund keeps its amount and, per line, the quantity and amount returned, so loyalty can
reverse exactly what a refund took back.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum
from omniloop.tenancy.models import tenant_fk


class OrderChannel(enum.StrEnum):
    store = "store"
    online = "online"


class OrderStatus(enum.StrEnum):
    paid = "paid"
    partially_refunded = "partially_refunded"
    refunded = "refunded"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        ForeignKeyConstraint(["tenant_id", "customer_id"],
                             ["customers.tenant_id", "customers.id"]),
        Index("ix_orders_tenant_id_customer_id_paid_at", "tenant_id", "customer_id", "paid_at"),
        Index("ix_orders_tenant_id_store_id_paid_at", "tenant_id", "store_id", "paid_at"),
        Index("ix_orders_tenant_id_paid_at", "tenant_id", "paid_at"),
        CheckConstraint("channel IN ('store', 'online')", name="channel_known"),
        CheckConstraint("(channel = 'store' AND store_id IS NOT NULL) OR "
                        "(channel = 'online' AND store_id IS NULL)", name="store_matches_channel"),
        CheckConstraint("subtotal_minor >= 0", name="subtotal_not_negative"),
        CheckConstraint("discount_minor >= 0", name="discount_not_negative"),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
        CheckConstraint("total_minor = subtotal_minor - discount_minor", name="total_adds_up"),
        CheckConstraint("refunded_minor >= 0 AND refunded_minor <= total_minor",
                        name="refunded_within_total"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    # The order's id in the system it came from; the idempotency key of ingestion.
    external_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))  # pos, shopline, 91app, api, ...
    channel: Mapped[OrderChannel] = mapped_column(
        string_enum(OrderChannel, 8))
    store_id: Mapped[str | None] = mapped_column(String(26))
    # The profile the order arrived on (the survivor at the time); None for a walk-in.
    customer_id: Mapped[str | None] = mapped_column(String(26))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[OrderStatus] = mapped_column(
        string_enum(OrderStatus, 20),
        default=OrderStatus.paid)
    paid_at: Mapped[datetime] = mapped_column()
    # SHA-256 of the ingested content: a retry must match it, or it is a conflict.
    content_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        lazy="raise", order_by="OrderLine.position", cascade="all, delete-orphan")
    refunds: Mapped[list[Refund]] = relationship(
        lazy="raise", order_by=lambda: [Refund.created_at, Refund.id], viewonly=True)


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id", "position"),
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"],
                             ondelete="CASCADE"),
        CheckConstraint("position >= 1", name="position_positive"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_minor >= 0", name="unit_price_not_negative"),
        CheckConstraint("discount_minor >= 0", name="discount_not_negative"),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
        CheckConstraint("net_minor >= 0 AND net_minor <= total_minor", name="net_within_total"),
        CheckConstraint("refunded_quantity >= 0 AND refunded_quantity <= quantity",
                        name="refunded_within_quantity"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    order_id: Mapped[str] = mapped_column(String(26))
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, ... as on the receipt
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(160))
    category: Mapped[str] = mapped_column(String(80), default="")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_quantity: Mapped[int] = mapped_column(Integer, default=0)


class Refund(Base):
    """Money given back on an order, by amount or for returned lines. Append-only."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id", "external_id"),
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    order_id: Mapped[str] = mapped_column(String(26))
    # The client's idempotency key for this refund, unique per order.
    external_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))  # the order's
    reason: Mapped[str] = mapped_column(String(255), default="")
    content_digest: Mapped[str] = mapped_column(String(64))
    actor_label: Mapped[str] = mapped_column(String(160))
    refunded_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = created_at_column()

    lines: Mapped[list[RefundLine]] = relationship(
        lazy="raise", order_by="RefundLine.position", cascade="all, delete-orphan")


class RefundLine(Base):
    """The quantity of one order line a refund took back, and the amount given for it."""

    __tablename__ = "refund_lines"
    __table_args__ = (
        UniqueConstraint("tenant_id", "refund_id", "line_id"),
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"],
                             ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "line_id"],
                             ["order_lines.tenant_id", "order_lines.id"]),
        Index("ix_refund_lines_tenant_id_line_id", "tenant_id", "line_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    refund_id: Mapped[str] = mapped_column(String(26))
    line_id: Mapped[str] = mapped_column(String(26))
    position: Mapped[int] = mapped_column(Integer)  # the order line's position, for reading
    quantity: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
