"""Tables of the campaigns module: campaigns, their coupons, redemptions and code batches.

Counters that concurrency could corrupt are kept on rows and changed only by single
conditional UPDATEs (or an upsert with a WHERE), whose row count says whether the change was
allowed:

* `coupons.status` goes available/claimed → redeemed only `WHERE status IN (...)`: a coupon is
  redeemed once however many cashiers scan it at the same moment;
* `campaigns.redeemed_count`, `claimed_count` and `discount_minor` move only while they stay
  within `quota` and `budget_minor`;
* `campaign_participants.redemptions` / `claims` move only while within the per-customer limit.

On PostgreSQL a second transaction updating the same row waits for the first and then
re-evaluates the WHERE against the committed row (READ COMMITTED), so the checks hold without
SERIALIZABLE. On SQLite writers are serialised by the write lock.
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
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum
from omniloop.tenancy.models import tenant_fk


class CampaignKind(enum.StrEnum):
    amount_off = "amount_off"
    percent_off = "percent_off"
    free_item = "free_item"
    voucher = "voucher"  # prepaid (group-buy) voucher: paid online, consumed in store
    gift = "gift"


class CampaignStatus(enum.StrEnum):
    """The operator's intent. `scheduled`/`active` are refined by the clock: see
    `rules.current_status` (a launched campaign before its start is scheduled, after its end
    ended)."""

    draft = "draft"
    scheduled = "scheduled"
    active = "active"
    paused = "paused"
    ended = "ended"


class Stacking(enum.StrEnum):
    exclusive = "exclusive"  # alone in a basket
    combinable = "combinable"  # with other combinable coupons


class CodeMode(enum.StrEnum):
    shared = "shared"  # one code for everyone (SPRING100), limited by the quota
    unique = "unique"  # one code per coupon: generated, imported, or made at claim


class CouponStatus(enum.StrEnum):
    available = "available"  # generated or imported, not yet anyone's
    claimed = "claimed"  # in someone's wallet
    redeemed = "redeemed"
    cancelled = "cancelled"


class RedemptionStatus(enum.StrEnum):
    redeemed = "redeemed"
    voided = "voided"


class AudienceGroup(enum.StrEnum):
    target = "target"
    holdout = "holdout"


class BatchStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("tenant_id", "shared_code"),
        Index("ix_campaigns_tenant_id_status", "tenant_id", "status"),
        CheckConstraint("percent_off IS NULL OR (percent_off >= 1 AND percent_off <= 100)",
                        name="percent_range"),
        CheckConstraint("holdout_share_bp >= 0 AND holdout_share_bp <= 5000",
                        name="holdout_range"),
        CheckConstraint("quota IS NULL OR redeemed_count <= quota", name="redeemed_within_quota"),
        CheckConstraint("quota IS NULL OR claimed_count <= quota", name="claimed_within_quota"),
        CheckConstraint("budget_minor IS NULL OR discount_minor <= budget_minor",
                        name="discount_within_budget"),
        CheckConstraint("redeemed_count >= 0 AND claimed_count >= 0 AND discount_minor >= 0",
                        name="counters_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    terms: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[CampaignKind] = mapped_column(
        string_enum(CampaignKind, 16))
    status: Mapped[CampaignStatus] = mapped_column(
        string_enum(CampaignStatus, 12),
        default=CampaignStatus.draft)
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column()

    # What the coupon is worth, by kind: amount_off and voucher use value_minor; percent_off
    # uses percent_off capped by max_discount_minor; free_item names a sku; gift a thing.
    value_minor: Mapped[int | None] = mapped_column(BigInteger)
    percent_off: Mapped[int | None] = mapped_column(Integer)
    max_discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    free_sku: Mapped[str | None] = mapped_column(String(64))
    gift_name: Mapped[str | None] = mapped_column(String(120))
    voucher_price_minor: Mapped[int | None] = mapped_column(BigInteger)

    # A coupon's own validity: N days after its claim, or fixed dates, else the campaign's.
    coupon_valid_days: Mapped[int | None] = mapped_column(Integer)
    coupon_valid_from: Mapped[datetime | None] = mapped_column()
    coupon_valid_until: Mapped[datetime | None] = mapped_column()

    # Rules. Empty lists mean "any".
    min_spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    store_ids: Mapped[list[str]] = mapped_column(default=list)
    skus: Mapped[list[str]] = mapped_column(default=list)
    categories: Mapped[list[str]] = mapped_column(default=list)
    weekdays: Mapped[list[int]] = mapped_column(JSON, default=list)  # 0 = Monday
    hours_start: Mapped[str | None] = mapped_column(String(5))  # "HH:MM", tenant time zone
    hours_end: Mapped[str | None] = mapped_column(String(5))
    claim_channels: Mapped[list[str]] = mapped_column(default=list)
    new_customers_only: Mapped[bool] = mapped_column(Boolean, default=False)
    per_customer_limit: Mapped[int] = mapped_column(Integer, default=1)
    quota: Mapped[int | None] = mapped_column(Integer)
    budget_minor: Mapped[int | None] = mapped_column(BigInteger)
    stacking: Mapped[Stacking] = mapped_column(
        string_enum(Stacking, 12),
        default=Stacking.exclusive)
    # Share of an intended audience held back to measure lift, in basis points (1000 = 10%).
    holdout_share_bp: Mapped[int] = mapped_column(Integer, default=0)

    code_mode: Mapped[CodeMode] = mapped_column(
        string_enum(CodeMode, 8),
        default=CodeMode.unique)
    shared_code: Mapped[str | None] = mapped_column(String(40))
    # Pattern for codes made at claim time when no generated code is left.
    code_pattern: Mapped[str] = mapped_column(String(64), default="####-####")

    claimed_count: Mapped[int] = mapped_column(Integer, default=0)
    redeemed_count: Mapped[int] = mapped_column(Integer, default=0)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)

    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column()


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_coupons_tenant_id_campaign_id_status", "tenant_id", "campaign_id", "status"),
        Index("ix_coupons_tenant_id_customer_id", "tenant_id", "customer_id"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    campaign_id: Mapped[str] = mapped_column(String(26))
    # None for coupons of a shared-code campaign: they are reached by their QR token.
    code: Mapped[str | None] = mapped_column(String(40))
    batch_id: Mapped[str | None] = mapped_column(String(26))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    status: Mapped[CouponStatus] = mapped_column(
        string_enum(CouponStatus, 10),
        default=CouponStatus.available)
    claim_channel: Mapped[str | None] = mapped_column(String(16))
    attribution: Mapped[dict[str, Any] | None] = mapped_column()  # utm_*, touchpoint, referrer
    claimed_at: Mapped[datetime | None] = mapped_column()
    valid_from: Mapped[datetime | None] = mapped_column()
    valid_until: Mapped[datetime | None] = mapped_column()
    redeemed_at: Mapped[datetime | None] = mapped_column()
    redemption_id: Mapped[str | None] = mapped_column(String(26))
    created_at: Mapped[datetime] = created_at_column()


class Redemption(Base):
    """A coupon (or a use of a shared code) consumed at a store; voided ones stay, marked."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
        ForeignKeyConstraint(["tenant_id", "store_id"], ["stores.tenant_id", "stores.id"]),
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        Index("ix_redemptions_tenant_id_campaign_id_redeemed_at", "tenant_id", "campaign_id",
              "redeemed_at"),
        Index("ix_redemptions_tenant_id_basket_id", "tenant_id", "basket_id"),
        Index("ix_redemptions_tenant_id_customer_id", "tenant_id", "customer_id"),
        CheckConstraint("discount_minor >= 0", name="discount_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    campaign_id: Mapped[str] = mapped_column(String(26))
    coupon_id: Mapped[str | None] = mapped_column(String(26))
    code: Mapped[str | None] = mapped_column(String(40))
    store_id: Mapped[str] = mapped_column(String(26))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    staff_label: Mapped[str] = mapped_column(String(160))
    actor_label: Mapped[str] = mapped_column(String(160))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    request_digest: Mapped[str] = mapped_column(String(64))
    basket_id: Mapped[str | None] = mapped_column(String(64))
    basket_total_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[str | None] = mapped_column(String(26))
    status: Mapped[RedemptionStatus] = mapped_column(
        string_enum(RedemptionStatus, 10),
        default=RedemptionStatus.redeemed)
    redeemed_at: Mapped[datetime] = mapped_column(default=utcnow)
    voided_at: Mapped[datetime | None] = mapped_column()
    voided_by: Mapped[str | None] = mapped_column(String(160))
    void_reason: Mapped[str | None] = mapped_column(String(255))


class CampaignParticipant(Base):
    """One customer's standing in one campaign: audience group and use against the limit."""

    __tablename__ = "campaign_participants"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
        Index("ix_campaign_participants_tenant_id_customer_id", "tenant_id", "customer_id"),
        CheckConstraint("claims >= 0 AND redemptions >= 0", name="counts_not_negative"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    campaign_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    audience_group: Mapped[AudienceGroup | None] = mapped_column(
        string_enum(AudienceGroup, 8))
    assigned_at: Mapped[datetime | None] = mapped_column()
    claims: Mapped[int] = mapped_column(Integer, default=0)
    redemptions: Mapped[int] = mapped_column(Integer, default=0)


class CodeBatch(Base):
    """Codes generated from a pattern or imported from a file, with progress for the admin."""

    __tablename__ = "code_batches"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "campaign_id"], ["campaigns.tenant_id", "campaigns.id"]),
        Index("ix_code_batches_tenant_id_campaign_id", "tenant_id", "campaign_id"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    campaign_id: Mapped[str] = mapped_column(String(26))
    source: Mapped[str] = mapped_column(String(10))  # generated | imported
    pattern: Mapped[str | None] = mapped_column(String(64))
    requested: Mapped[int] = mapped_column(Integer)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[BatchStatus] = mapped_column(
        string_enum(BatchStatus, 8),
        default=BatchStatus.queued)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column()
