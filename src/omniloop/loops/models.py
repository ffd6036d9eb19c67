"""Tables of the loops module: touchpoints, receipts, feedback and recovery tasks, referral
codes and referrals, short links, and the brand's loop programme settings.

Scans and clicks are not tables of their own: they are `qr_scan` and `link_click` events
(customers.events), so they sit on the one timeline every other module reads. Counters kept
here (`ShortLink.clicks`) are a convenience for the admin list, added to in batches.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum
from omniloop.tenancy.models import tenant_fk


class Placement(enum.StrEnum):
    table = "table"
    counter = "counter"
    receipt = "receipt"
    poster = "poster"
    packaging = "packaging"
    staff_badge = "staff_badge"


class Purpose(enum.StrEnum):
    membership = "membership"    # become a member (phone), optionally with a reward
    line_follow = "line_follow"  # add the LINE official account (its add-friend URL)
    feedback = "feedback"        # rating, NPS, comment; then the review invitation
    review = "review"            # the store's public review page (e.g. Google Maps)
    referral = "referral"        # a member gets their referral link and QR
    claim = "claim"              # claim a campaign's coupon (the campaigns claim page)
    url = "url"                  # any URL


class TaskStatus(enum.StrEnum):
    open = "open"
    in_progress = "in_progress"
    resolved = "resolved"


class ReferralStatus(enum.StrEnum):
    pending = "pending"      # the friend claimed the welcome coupon; no store purchase yet
    qualified = "qualified"  # first store purchase within the window: both rewarded
    expired = "expired"      # the window passed without a store purchase


class LoopProgram(Base):
    """The brand's referral and feedback settings; created with defaults when first read."""

    __tablename__ = "loop_programs"
    __table_args__ = (
        CheckConstraint("qualify_days >= 1", name="qualify_days_positive"),
        CheckConstraint("monthly_cap >= 0", name="monthly_cap_not_negative"),
        CheckConstraint("referrer_points >= 0 AND friend_points >= 0", name="points_not_negative"),
        CheckConstraint("low_rating >= 1 AND low_rating <= 5", name="low_rating_range"),
        CheckConstraint("low_nps >= 0 AND low_nps <= 10", name="low_nps_range"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    # The campaign whose coupon a referred friend gets (its value is the welcome offer).
    welcome_campaign_id: Mapped[str | None] = mapped_column(String(26))
    qualify_days: Mapped[int] = mapped_column(Integer, default=30)
    monthly_cap: Mapped[int] = mapped_column(Integer, default=10)  # 0: no referrals
    referrer_points: Mapped[int] = mapped_column(Integer, default=100)
    friend_points: Mapped[int] = mapped_column(Integer, default=50)
    # Feedback at or below either mark opens a service-recovery task.
    low_rating: Mapped[int] = mapped_column(Integer, default=2)
    low_nps: Mapped[int] = mapped_column(Integer, default=6)
    make_good_campaign_id: Mapped[str | None] = mapped_column(String(26))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Touchpoint(Base):
    """A placed QR code (table, counter, receipt, …) with a purpose, reached at /t/<code>.

    The code is unique across brands: the short URL carries no brand.
    """

    __tablename__ = "touchpoints"
    __table_args__ = (
        UniqueConstraint("code"),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        Index("ix_touchpoints_tenant_id_store_id", "tenant_id", "store_id"),
        CheckConstraint("reward_points >= 0", name="reward_points_not_negative"),
        CheckConstraint("number IS NULL OR number >= 1", name="number_positive"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    store_id: Mapped[str] = mapped_column(String(26))
    code: Mapped[str] = mapped_column(String(16))
    placement: Mapped[Placement] = mapped_column(string_enum(Placement, 12))
    number: Mapped[int | None] = mapped_column(Integer)  # table number
    name: Mapped[str] = mapped_column(String(120), default="")
    purpose: Mapped[Purpose] = mapped_column(string_enum(Purpose, 12))
    # The LINE add-friend URL, the review URL or any URL; for feedback: where to review.
    target_url: Mapped[str] = mapped_column(String(500), default="")
    campaign_id: Mapped[str | None] = mapped_column(String(26))  # purpose claim
    reward_campaign_id: Mapped[str | None] = mapped_column(String(26))
    reward_points: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Scans recorded so far (the recorder adds to it in batches): a touchpoint never scanned
    # may be deleted; one that was is retired instead, so its history stays in the report.
    scans: Mapped[int] = mapped_column(BigInteger, default=0)
    # Retired: the printed code answers "not in use" for good and the admin list hides it
    # (under a filter); its scans stay on the timeline and in the loop report.
    retired_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Receipt(Base):
    """A receipt QR issued for an order: binds the order, its store and the staff member,
    so feedback that arrives through it is tied to that visit."""

    __tablename__ = "loop_receipts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id"),
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    order_id: Mapped[str] = mapped_column(String(26))
    store_id: Mapped[str | None] = mapped_column(String(26))
    staff_label: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = created_at_column()


class Feedback(Base):
    __tablename__ = "loop_feedback"
    __table_args__ = (
        UniqueConstraint("tenant_id", "receipt_id"),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_loop_feedback_tenant_id_created_at", "tenant_id", "created_at"),
        CheckConstraint("rating >= 1 AND rating <= 5", name="rating_range"),
        CheckConstraint("nps IS NULL OR (nps >= 0 AND nps <= 10)", name="nps_range"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    store_id: Mapped[str | None] = mapped_column(String(26))
    touchpoint_id: Mapped[str | None] = mapped_column(String(26))
    customer_id: Mapped[str] = mapped_column(String(26))
    rating: Mapped[int] = mapped_column(Integer)
    nps: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    receipt_id: Mapped[str | None] = mapped_column(String(26))
    order_id: Mapped[str | None] = mapped_column(String(26))
    staff_label: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = created_at_column()


class RecoveryTask(Base):
    """A low score for the store manager to act on (a call, an apology, a make-good)."""

    __tablename__ = "loop_recovery_tasks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "feedback_id"),
        Index("ix_loop_recovery_tasks_tenant_id_status", "tenant_id", "status"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    feedback_id: Mapped[str] = mapped_column(String(26))
    store_id: Mapped[str | None] = mapped_column(String(26))
    customer_id: Mapped[str] = mapped_column(String(26))
    status: Mapped[TaskStatus] = mapped_column(string_enum(TaskStatus, 12),
                                               default=TaskStatus.open)
    note: Mapped[str] = mapped_column(Text, default="")
    make_good_coupon_id: Mapped[str | None] = mapped_column(String(26))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReferralCode(Base):
    """A member's own referral code (one per member, made when first asked for)."""

    __tablename__ = "referral_codes"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
    )

    tenant_id: Mapped[str] = tenant_fk()
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_column()


class Referral(Base):
    """A friend who came through a member's code. One per friend (a person is referred once).

    `status` moves pending → qualified by one conditional UPDATE, so the rewards that follow
    it happen once however many purchases race for it.
    """

    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("tenant_id", "friend_id"),
        ForeignKeyConstraint(["tenant_id", "referrer_id"], ["customers.tenant_id", "customers.id"]),
        ForeignKeyConstraint(["tenant_id", "friend_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_referrals_tenant_id_referrer_id_created_at", "tenant_id", "referrer_id",
              "created_at"),
        Index("ix_referrals_tenant_id_created_at", "tenant_id", "created_at"),
        # The expiry job: a brand's pending referrals whose window has passed.
        Index("ix_referrals_tenant_id_status_qualify_by", "tenant_id", "status", "qualify_by"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    referrer_id: Mapped[str] = mapped_column(String(26))
    friend_id: Mapped[str] = mapped_column(String(26))
    code: Mapped[str] = mapped_column(String(16))
    status: Mapped[ReferralStatus] = mapped_column(string_enum(ReferralStatus, 10),
                                                   default=ReferralStatus.pending)
    coupon_id: Mapped[str | None] = mapped_column(String(26))
    created_at: Mapped[datetime] = created_at_column()
    qualify_by: Mapped[datetime] = mapped_column()
    qualified_at: Mapped[datetime | None] = mapped_column()
    qualified_by: Mapped[str | None] = mapped_column(String(64))  # order:<id> | redemption:<id>
    store_id: Mapped[str | None] = mapped_column(String(26))  # where the friend bought


class ShortLink(Base):
    """`/r/<code>` → a campaign URL, with UTM parameters added and clicks counted."""

    __tablename__ = "short_links"
    __table_args__ = (UniqueConstraint("code"),)

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    code: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(120), default="")
    target_url: Mapped[str] = mapped_column(String(1000))
    utm_source: Mapped[str] = mapped_column(String(64), default="")
    utm_medium: Mapped[str] = mapped_column(String(64), default="")
    utm_campaign: Mapped[str] = mapped_column(String(64), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    bot_clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = created_at_column()
