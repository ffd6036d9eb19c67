"""Tables of the loyalty module: the program's settings, accounts and the points ledger.

Points are money to customers, so the ledger is append-only: every change is a new entry
with its reason, its source (order, refund, redemption, booking) and who made it. Three
figures must always agree, and tests check that they do:

* `points_accounts.balance` — the running balance, read in O(1), changed only by conditional
  UPDATEs that keep it ≥ 0 (a CHECK constraint is the backstop);
* the sum of the customer's `points_entries.points`;
* the sum of `remaining` over the customer's earn lots (positive entries), which are consumed
  oldest-expiry first by redemptions, penalties and expiry.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum
from omniloop.tenancy.models import tenant_fk


class Rounding(enum.StrEnum):
    down = "down"  # NT$199 at 1 point per NT$100 → 1 point
    nearest = "nearest"  # half up: NT$150 → 2 points
    up = "up"


class EntryKind(enum.StrEnum):
    earn = "earn"
    redeem = "redeem"
    expire = "expire"
    adjust = "adjust"
    penalty = "penalty"
    reversal = "reversal"


# A tier: code, name, threshold on rolling 12-month spend, earn multiplier (basis points)
# and, optionally, the campaign whose coupon its members get in their birthday month.
DEFAULT_TIERS: list[dict[str, Any]] = [
    {"code": "member", "name": "Member", "threshold_minor": 0, "multiplier_bp": 10000,
     "birthday_campaign_id": None},
    {"code": "silver", "name": "Silver", "threshold_minor": 500000, "multiplier_bp": 12500,
     "birthday_campaign_id": None},
    {"code": "gold", "name": "Gold", "threshold_minor": 1500000, "multiplier_bp": 15000,
     "birthday_campaign_id": None},
]


class LoyaltyProgram(Base):
    """One per brand, written the first time its settings are saved; until then readers
    get the defaults (`program.get_program`)."""

    __tablename__ = "loyalty_programs"
    __table_args__ = (
        CheckConstraint("earn_unit_minor > 0", name="earn_unit_positive"),
        CheckConstraint("earn_points >= 0", name="earn_points_not_negative"),
        CheckConstraint("point_value_minor > 0", name="point_value_positive"),
        CheckConstraint("max_redeem_share_bp >= 0 AND max_redeem_share_bp <= 10000",
                        name="redeem_share_range"),
        CheckConstraint("min_redeem_points >= 1", name="min_redeem_positive"),
        CheckConstraint("expiry_months >= 0", name="expiry_not_negative"),
        CheckConstraint("no_show_penalty_points >= 0", name="penalty_not_negative"),
        CheckConstraint("risk_window_days >= 1", name="risk_window_positive"),
        CheckConstraint("high_risk_no_shows >= 1", name="high_risk_positive"),
        CheckConstraint("auto_blacklist_no_shows >= 0", name="auto_blacklist_not_negative"),
        CheckConstraint("auto_blacklist_days >= 1", name="auto_blacklist_days_positive"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # earn_points for every earn_unit_minor spent: 1 point per NT$100 = (10000, 1).
    earn_unit_minor: Mapped[int] = mapped_column(BigInteger, default=10000)
    earn_points: Mapped[int] = mapped_column(Integer, default=1)
    rounding: Mapped[Rounding] = mapped_column(
        string_enum(Rounding, 8),
        default=Rounding.down)
    point_value_minor: Mapped[int] = mapped_column(BigInteger, default=100)  # 1 point = NT$1
    max_redeem_share_bp: Mapped[int] = mapped_column(Integer, default=5000)
    min_redeem_points: Mapped[int] = mapped_column(Integer, default=10)
    expiry_months: Mapped[int] = mapped_column(Integer, default=12)  # 0: points never expire
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=lambda: list(DEFAULT_TIERS))
    no_show_penalty_points: Mapped[int] = mapped_column(Integer, default=0)
    # Risk: no-shows counted over this many days; this many make a customer "high risk";
    # this many (0: never) put them on the blacklist for `auto_blacklist_days`.
    risk_window_days: Mapped[int] = mapped_column(Integer, default=90)
    high_risk_no_shows: Mapped[int] = mapped_column(Integer, default=2)
    auto_blacklist_no_shows: Mapped[int] = mapped_column(Integer, default=0)
    auto_blacklist_days: Mapped[int] = mapped_column(Integer, default=30)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PointsAccount(Base):
    __tablename__ = "points_accounts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    tier_code: Mapped[str | None] = mapped_column(String(32))
    tier_since: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PointsEntry(Base):
    __tablename__ = "points_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_points_entries_tenant_id_customer_id_created_at", "tenant_id", "customer_id",
              "created_at"),
        Index("ix_points_entries_tenant_id_order_id", "tenant_id", "order_id"),
        # Open lots, oldest expiry first: what redemptions and the expiry job walk.
        Index("ix_points_entries_tenant_id_customer_id_open", "tenant_id", "customer_id",
              "lot_open", "expires_at"),
        Index("ix_points_entries_tenant_id_lot_open_expires_at", "tenant_id", "lot_open",
              "expires_at"),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("remaining <= points OR points < 0", name="remaining_within_points"),
        CheckConstraint("kind IN ('earn', 'adjust') OR remaining = 0", name="lots_only_earn"),
        CheckConstraint("unrecovered >= 0", name="unrecovered_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    customer_id: Mapped[str] = mapped_column(String(26))
    kind: Mapped[EntryKind] = mapped_column(
        string_enum(EntryKind, 10))
    points: Mapped[int] = mapped_column(BigInteger)  # signed: + earns, − spends
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(255), default="")
    order_id: Mapped[str | None] = mapped_column(String(26))
    refund_id: Mapped[str | None] = mapped_column(String(26))
    reference: Mapped[str | None] = mapped_column(String(64))  # POS redemption, booking, …
    actor_label: Mapped[str] = mapped_column(String(160))
    idempotency_key: Mapped[str] = mapped_column(String(120))
    # Lots: positive entries keep what is left of them and when it expires.
    remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    lot_open: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column()
    # A reversal that found the points already spent: what could not be taken back.
    unrecovered: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = created_at_column()


class TierChange(Base):
    """A customer's move between tiers: by the evaluation job, or the first tier on joining."""

    __tablename__ = "tier_changes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_tier_changes_tenant_id_customer_id_created_at", "tenant_id", "customer_id",
              "created_at"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    customer_id: Mapped[str] = mapped_column(String(26))
    from_tier: Mapped[str | None] = mapped_column(String(32))
    to_tier: Mapped[str] = mapped_column(String(32))
    spend_minor: Mapped[int] = mapped_column(BigInteger)  # rolling 12 months, when evaluated
    actor_label: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = created_at_column()


class BirthdayReward(Base):
    """One birthday coupon per customer per year, whatever how often the job runs."""

    __tablename__ = "birthday_rewards"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
    )

    tenant_id: Mapped[str] = tenant_fk()
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(26))
    coupon_id: Mapped[str | None] = mapped_column(String(26))
    created_at: Mapped[datetime] = created_at_column()


class NoShowKind(enum.StrEnum):
    booking = "booking"
    pickup = "pickup"  # a reserved order not collected


class NoShow(Base):
    """A booking or reserved pickup the customer did not turn up for, marked by staff."""

    __tablename__ = "no_shows"
    __table_args__ = (
        UniqueConstraint("tenant_id", "kind", "reference"),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        Index("ix_no_shows_tenant_id_customer_id_due_at", "tenant_id", "customer_id", "due_at"),
        CheckConstraint("penalty_points >= 0", name="penalty_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    customer_id: Mapped[str] = mapped_column(String(26))
    kind: Mapped[NoShowKind] = mapped_column(string_enum(NoShowKind, 10))
    reference: Mapped[str] = mapped_column(String(64))  # the booking or pickup order
    store_id: Mapped[str | None] = mapped_column(String(26))
    due_at: Mapped[datetime] = mapped_column()  # when the customer should have come
    note: Mapped[str] = mapped_column(String(255), default="")
    penalty_points: Mapped[int] = mapped_column(BigInteger, default=0)  # taken, not asked
    actor_label: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = created_at_column()
    cancelled_at: Mapped[datetime | None] = mapped_column()
    cancelled_by: Mapped[str | None] = mapped_column(String(160))


class BlacklistEntry(Base):
    """A customer staff should not serve bookings or reservations for until `ends_at`."""

    __tablename__ = "blacklist_entries"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_blacklist_entries_tenant_id_customer_id_ends_at", "tenant_id", "customer_id",
              "ends_at"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    customer_id: Mapped[str] = mapped_column(String(26))
    reason: Mapped[str] = mapped_column(String(255))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    actor_label: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = created_at_column()
    lifted_at: Mapped[datetime | None] = mapped_column()
    lifted_by: Mapped[str | None] = mapped_column(String(160))
