"""The campaign report: issued, claimed, redeemed, O2O conversion, discount cost, revenue.

Computed from the rows (coupons, redemptions, the orders redemptions point at) each time it
is read, not from the counters on `campaigns`. The counters exist to enforce quota and
budget under concurrency; the report has to be explainable row by row, split by claim
channel, store and day, and narrowed to the stores a store manager may see, none of which
the counters can do.

Definitions (DESIGN.md, "O2O conversion: coupons redeemed in a store ÷ coupons claimed
online, per campaign/channel"):

* **issued**: coupons that exist and are not cancelled: generated, imported, or made at a
  claim;
* **claimed**: coupons that went into someone's wallet through a claim channel, whatever
  happened to them since;
* **redeemed**: redemptions that stand (voided ones are counted apart, as `voided`); this
  includes uses of a shared code or of a printed code that nobody claimed online;
* **redeemed from claims**: standing redemptions of coupons that were claimed online: the
  numerator of the O2O conversion, whose denominator is `claimed`;
* **by channel**: per claim channel, the coupons claimed through it and how many of those are
  now redeemed;
* **by store**: per store, its redemptions; its conversion is its redemptions of claimed
  coupons ÷ the campaign's claims overall, so the stores' conversions add up to the total;
* **discount cost**: the sum of the standing redemptions' discounts;
* **revenue**: what the orders linked to standing redemptions brought in after refunds
  (`total_minor − refunded_minor`), each order once.

Claims belong to no store, so a store-scoped actor sees the campaign's issued and claimed
figures whole, and every redemption figure for their own stores only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select

from omniloop.campaigns.models import Coupon, CouponStatus, Redemption, RedemptionStatus
from omniloop.campaigns.redemption import list_redemptions
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import to_local
from omniloop.core.db import Session
from omniloop.orders.models import Order
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import list_stores
from omniloop.tenancy.tenants import get_tenant

# The chart shows at most this many days (the latest ones); a longer campaign's earlier days
# are still in the totals.
MAX_DAYS = 92
RECENT_REDEMPTIONS = 20


def ratio(part: int, whole: int) -> float | None:
    """A share, or None when there is nothing to divide by (shown as "—", not 0%)."""
    return part / whole if whole else None


@dataclass(frozen=True)
class ChannelRow:
    channel: str
    claimed: int
    redeemed: int

    @property
    def conversion(self) -> float | None:
        return ratio(self.redeemed, self.claimed)


@dataclass(frozen=True)
class StoreRow:
    store_id: str
    name: str
    code: str
    redeemed: int
    redeemed_from_claims: int
    discount_minor: int
    revenue_minor: int
    conversion: float | None  # redeemed_from_claims ÷ the campaign's claims overall


@dataclass(frozen=True)
class DayRow:
    day: date  # in the brand's time zone
    redeemed: int
    discount_minor: int


@dataclass(frozen=True)
class RecentRedemption:
    id: str
    redeemed_at: datetime
    store_name: str
    code: str | None
    staff_label: str
    discount_minor: int
    status: RedemptionStatus
    voided_at: datetime | None
    void_reason: str | None


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: str
    currency: str
    timezone: str
    store_scoped: bool  # redemption figures cover only the actor's stores
    issued: int
    claimed: int
    redeemed: int
    redeemed_from_claims: int
    voided: int
    discount_minor: int
    revenue_minor: int
    orders: int
    by_channel: list[ChannelRow]
    by_store: list[StoreRow]
    days: list[DayRow]
    recent: list[RecentRedemption]

    @property
    def conversion(self) -> float | None:
        return ratio(self.redeemed_from_claims, self.claimed)


def _redemptions_where(actor: Actor, campaign_ids: list[str],
                       status: RedemptionStatus) -> list[ColumnElement[bool]]:
    """The campaigns' redemptions of one status that the actor may see (its stores only)."""
    conditions: list[ColumnElement[bool]] = [
        Redemption.tenant_id == actor.tenant_id, Redemption.campaign_id.in_(campaign_ids),
        Redemption.status == status]
    if actor.store_ids is not None:
        conditions.append(Redemption.store_id.in_(actor.store_ids))
    return conditions


def _days(rows: list[tuple[datetime, int]], timezone: str) -> list[DayRow]:
    """Redemptions per local day, every day from the first to the last (gaps as zero), so the
    chart's bars stand at even intervals."""
    counts: dict[date, int] = defaultdict(int)
    discounts: dict[date, int] = defaultdict(int)
    for redeemed_at, discount in rows:
        day = to_local(redeemed_at, timezone).date()
        counts[day] += 1
        discounts[day] += discount
    if not counts:
        return []
    last = max(counts)
    first = max(min(counts), last - timedelta(days=MAX_DAYS - 1))
    span = (last - first).days + 1
    return [DayRow(day=day, redeemed=counts.get(day, 0), discount_minor=discounts.get(day, 0))
            for day in (first + timedelta(days=i) for i in range(span))]


def campaign_report(session: Session, actor: Actor, campaign_id: str) -> CampaignReport:
    """The report of one campaign of the actor's brand (404 for anyone else's)."""
    actor.require(Permission.campaigns_read)
    campaign = get_campaign(session, actor, campaign_id)
    tenant = get_tenant(session, actor.tenant_id)

    # Coupons: issued and claimed, by claim channel.
    issued = 0
    claimed_by_channel: dict[str, int] = defaultdict(int)
    for status, channel, count in session.execute(
            select(Coupon.status, Coupon.claim_channel, func.count())
            .where(Coupon.tenant_id == actor.tenant_id, Coupon.campaign_id == campaign.id)
            .group_by(Coupon.status, Coupon.claim_channel)).all():
        if status != CouponStatus.cancelled:
            issued += count
        if channel is not None:
            claimed_by_channel[channel] += count
    claimed = sum(claimed_by_channel.values())

    # Standing redemptions by store and by the claim channel of their coupon (None: a
    # shared code, or a code nobody claimed online).
    active = _redemptions_where(actor, [campaign.id], RedemptionStatus.redeemed)
    redeemed_by_channel: dict[str, int] = defaultdict(int)
    store_counts: dict[str, int] = defaultdict(int)
    store_from_claims: dict[str, int] = defaultdict(int)
    store_discounts: dict[str, int] = defaultdict(int)
    for store_id, channel, count, discount in session.execute(
            select(Redemption.store_id, Coupon.claim_channel, func.count(),
                   func.coalesce(func.sum(Redemption.discount_minor), 0))
            .select_from(Redemption)
            .outerjoin(Coupon, and_(Coupon.tenant_id == Redemption.tenant_id,
                                    Coupon.id == Redemption.coupon_id))
            .where(*active)
            .group_by(Redemption.store_id, Coupon.claim_channel)).all():
        store_counts[store_id] += count
        store_discounts[store_id] += int(discount)
        if channel is not None:
            redeemed_by_channel[channel] += count
            store_from_claims[store_id] += count

    # Revenue: each linked order once, after its refunds.
    order_net: dict[str, int] = {}
    store_revenue: dict[str, int] = defaultdict(int)
    for store_id, order_id, total, refunded in session.execute(
            select(Redemption.store_id, Order.id, Order.total_minor, Order.refunded_minor)
            .join(Order, and_(Order.tenant_id == Redemption.tenant_id,
                              Order.id == Redemption.order_id))
            .where(*active).distinct()).all():
        if order_id not in order_net:
            store_revenue[store_id] += total - refunded
        order_net[order_id] = total - refunded

    voided = session.scalar(
        select(func.count()).select_from(Redemption)
        .where(*_redemptions_where(actor, [campaign.id], RedemptionStatus.voided))) or 0
    day_rows = [(at, int(discount)) for at, discount in session.execute(
        select(Redemption.redeemed_at, Redemption.discount_minor).where(*active)).all()]

    stores = {s.id: s for s in list_stores(session, actor)}
    by_store = [StoreRow(store_id=store_id,
                         name=stores[store_id].name if store_id in stores else store_id,
                         code=stores[store_id].code if store_id in stores else "",
                         redeemed=count, redeemed_from_claims=store_from_claims[store_id],
                         discount_minor=store_discounts[store_id],
                         revenue_minor=store_revenue[store_id],
                         conversion=ratio(store_from_claims[store_id], claimed))
                for store_id, count in store_counts.items()]
    by_store.sort(key=lambda row: (-row.redeemed, row.code, row.store_id))
    by_channel = [ChannelRow(channel=channel, claimed=claimed_by_channel.get(channel, 0),
                             redeemed=redeemed_by_channel.get(channel, 0))
                  for channel in set(claimed_by_channel) | set(redeemed_by_channel)]
    by_channel.sort(key=lambda row: (-row.claimed, row.channel))

    recent = [RecentRedemption(
        id=r.id, redeemed_at=r.redeemed_at,
        store_name=stores[r.store_id].name if r.store_id in stores else r.store_id,
        code=r.code, staff_label=r.staff_label, discount_minor=r.discount_minor,
        status=r.status, voided_at=r.voided_at, void_reason=r.void_reason)
        for r in list_redemptions(session, actor, campaign.id, limit=RECENT_REDEMPTIONS)]

    return CampaignReport(
        campaign_id=campaign.id, currency=tenant.currency, timezone=tenant.timezone,
        store_scoped=actor.store_ids is not None, issued=issued, claimed=claimed,
        redeemed=sum(store_counts.values()),
        redeemed_from_claims=sum(store_from_claims.values()), voided=voided,
        discount_minor=sum(store_discounts.values()), revenue_minor=sum(order_net.values()),
        orders=len(order_net), by_channel=by_channel, by_store=by_store,
        days=_days(day_rows, tenant.timezone), recent=recent)


@dataclass(frozen=True)
class ListFigures:
    claimed: int
    redeemed: int


def list_figures(session: Session, actor: Actor,
                 campaign_ids: list[str]) -> dict[str, ListFigures]:
    """Claimed and redeemed per campaign for the list page, counted as the report counts them
    (redemptions at the actor's stores only), so the list and the report never disagree."""
    actor.require(Permission.campaigns_read)
    if not campaign_ids:
        return {}
    claimed: dict[str, int] = dict(session.execute(
        select(Coupon.campaign_id, func.count())
        .where(Coupon.tenant_id == actor.tenant_id, Coupon.campaign_id.in_(campaign_ids),
               Coupon.claim_channel.is_not(None))
        .group_by(Coupon.campaign_id)).all())
    redeemed: dict[str, int] = dict(session.execute(
        select(Redemption.campaign_id, func.count())
        .where(*_redemptions_where(actor, campaign_ids, RedemptionStatus.redeemed))
        .group_by(Redemption.campaign_id)).all())
    return {campaign_id: ListFigures(claimed=claimed.get(campaign_id, 0),
                                     redeemed=redeemed.get(campaign_id, 0))
            for campaign_id in campaign_ids}
