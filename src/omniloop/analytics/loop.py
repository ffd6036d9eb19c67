"""The closed-loop dashboard, the parts that need only orders and coupons: O2O conversion
brand-wide, the time from claim to redemption, and cohort retention by first-purchase month,
split between people whose first purchase was online and those whose first was in a store.

Definitions (DESIGN.md "Metrics"; docs/analytics.md):

* **O2O conversion** = coupons claimed online whose redemption stands ÷ coupons claimed online,
  over coupons claimed in the range (the campaign report's definition, for every campaign);
* **claim → redemption** = the time from a coupon's claim to its standing redemption, for
  the coupons claimed in the range and redeemed since; its median and quartiles, in days, and
  the count per bucket of days;
* **cohorts**: each person (merged profiles together; erased ones and walk-ins left out) is in
  the cohort of the local month of their first order not refunded in full, and is
  *online-first* or *offline-first* by that order's channel; **retention** at month k = the
  share of the cohort with an order (not refunded in full) in the k-th month after the
  cohort's month (k = 0 is the cohort month itself, always 100 %).

* **offline→online rate** and the **loop coefficient K**: exactly the loop report's
  (`loops.report.loop_report`, brand-wide over the same days), so the two pages never differ.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, select

from omniloop.analytics.dashboard import check_range
from omniloop.analytics.rfm import day_end_utc, merged_and_erased, require_brand_wide
from omniloop.campaigns.models import Coupon, Redemption, RedemptionStatus
from omniloop.core.clock import as_utc, to_local
from omniloop.core.db import Session
from omniloop.loops.report import LoopFigures, loop_report
from omniloop.orders.models import Order, OrderChannel, OrderStatus
from omniloop.tenancy.access import Actor
from omniloop.tenancy.tenants import get_tenant

# Upper bounds (days, included) of the claim → redemption buckets; the last is open.
DELAY_BUCKETS = (0, 1, 3, 7, 14, 30)
MAX_COHORT_MONTHS = 12


@dataclass
class Cohort:
    month: date          # the first day of the cohort's month
    first: str           # "online" or "store"
    size: int
    active: list[int]    # people of the cohort with an order in month k, k = 0, 1, …

    def retention(self, k: int) -> float | None:
        return self.active[k] / self.size if k < len(self.active) and self.size else None


@dataclass
class LoopDashboard:
    start: date
    end: date
    claimed: int = 0
    redeemed: int = 0
    delays_days: list[float] = field(default_factory=list)  # per redeemed claim
    buckets: list[int] = field(default_factory=list)        # counts per DELAY_BUCKETS + 1
    cohorts: list[Cohort] = field(default_factory=list)
    loop: LoopFigures | None = None  # the in-store loop, brand-wide

    @property
    def conversion(self) -> float | None:
        return self.redeemed / self.claimed if self.claimed else None

    def delay_quantiles(self) -> tuple[float, float, float] | None:
        """25th percentile, median, 75th percentile of claim → redemption, in days."""
        if not self.delays_days:
            return None
        if len(self.delays_days) == 1:
            only = self.delays_days[0]
            return (only, only, only)
        q1, q2, q3 = statistics.quantiles(self.delays_days, n=4, method="inclusive")
        return (q1, q2, q3)


def _month(day: date) -> date:
    return day.replace(day=1)


def _months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def loop_dashboard(session: Session, actor: Actor, start: date, end: date) -> LoopDashboard:
    """Claims, redemptions and cohorts of the brand; claims in [start, end] (local days),
    cohorts of first purchases in that range followed up to `end`."""
    require_brand_wide(actor)
    check_range(start, end)
    tenant = get_tenant(session, actor.tenant_id)
    since = day_end_utc(start - timedelta(days=1), tenant.timezone)
    until = day_end_utc(end, tenant.timezone)
    board = LoopDashboard(start=start, end=end, buckets=[0] * (len(DELAY_BUCKETS) + 1))
    board.loop = loop_report(session, actor, since, until).overall

    for claimed_at, redeemed_at in session.execute(
            select(Coupon.claimed_at, Redemption.redeemed_at)
            .outerjoin(Redemption, and_(Redemption.tenant_id == Coupon.tenant_id,
                                        Redemption.coupon_id == Coupon.id,
                                        Redemption.status == RedemptionStatus.redeemed))
            .where(Coupon.tenant_id == actor.tenant_id, Coupon.claim_channel.is_not(None),
                   Coupon.claimed_at >= since, Coupon.claimed_at < until)).all():
        board.claimed += 1
        if redeemed_at is None or claimed_at is None:
            continue
        board.redeemed += 1
        days = (as_utc(redeemed_at) - as_utc(claimed_at)).total_seconds() / 86_400
        board.delays_days.append(days)
        whole = int(days)
        index = next((i for i, bound in enumerate(DELAY_BUCKETS) if whole <= bound),
                     len(DELAY_BUCKETS))
        board.buckets[index] += 1

    # Cohorts: every order up to `end`, per person, in time order.
    merged, erased = merged_and_erased(session, actor.tenant_id)
    first: dict[str, tuple[datetime, str]] = {}
    months: dict[str, set[date]] = defaultdict(set)
    for customer_id, paid_at, order_channel in session.execute(
            select(Order.customer_id, Order.paid_at, Order.channel)
            .where(Order.tenant_id == actor.tenant_id, Order.customer_id.is_not(None),
                   Order.paid_at < until, Order.status != OrderStatus.refunded)).all():
        if customer_id is None:
            continue
        person = merged.get(customer_id, customer_id)
        if person in erased:
            continue
        local = to_local(paid_at, tenant.timezone)
        if person not in first or local < first[person][0]:
            first[person] = (local, OrderChannel(order_channel).value)
        months[person].add(_month(local.date()))
    groups: dict[tuple[date, str], list[str]] = defaultdict(list)
    for person, (when, first_channel) in first.items():
        if when.date() >= start:
            groups[(_month(when.date()), first_channel)].append(person)
    last_month = _month(end)
    for (month, channel), people in sorted(groups.items()):
        span = min(_months_between(month, last_month), MAX_COHORT_MONTHS) + 1
        active = [0] * span
        for person in people:
            for seen in months[person]:
                k = _months_between(month, seen)
                if 0 <= k < span:
                    active[k] += 1
        board.cohorts.append(Cohort(month=month, first=channel, size=len(people),
                                    active=active))
    return board
