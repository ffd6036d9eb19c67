"""Campaign lift: the campaign report's funnel, and the incremental lift over the holdout.

The funnel (claimed → redeemed by channel and store, O2O conversion, discount cost, revenue)
is `campaigns.report.campaign_report` itself, so the campaign page and the lift page can never
disagree. This module adds the holdout comparison (DESIGN.md, "Incremental lift"):

* the **audience** is the campaign's participants with an audience group, assigned by
  `campaigns.claims.assign_audience` (targets were sent the offer, the holdout was not);
* a participant **converted** when the person (their profile or any merged into the same
  survivor) has an order paid from their assignment until the campaign's end (or now, if it
  has not ended), not refunded in full — whether or not they used the coupon, because the
  holdout had none to use;
* **lift** = (conversion of targets − conversion of holdout) ÷ conversion of holdout, with a
  95 % interval from the delta method on the log of the ratio of the two proportions; the
  **difference** in percentage points, with its 95 % (Wald) interval, is given too, and is
  the only measure when nobody in the holdout converted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from omniloop.analytics.rfm import merged_and_erased
from omniloop.campaigns.models import AudienceGroup, CampaignParticipant
from omniloop.campaigns.report import CampaignReport, campaign_report
from omniloop.campaigns.service import get_campaign
from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.orders.models import Order, OrderStatus
from omniloop.tenancy.access import Actor, Permission

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Lift:
    targets: int
    targets_converted: int
    holdout: int
    holdout_converted: int
    window_start: datetime | None
    window_end: datetime
    relative: Interval | None     # lift as a fraction (0.12 = +12 %)
    difference: Interval | None   # conversion difference as a fraction (0.03 = 3 points)

    @property
    def target_rate(self) -> float | None:
        return self.targets_converted / self.targets if self.targets else None

    @property
    def holdout_rate(self) -> float | None:
        return self.holdout_converted / self.holdout if self.holdout else None


@dataclass(frozen=True)
class Verdict:
    key: str       # no_holdout | too_early | not_significant | significant
    message: str   # an English msgid with placeholders
    params: dict[str, str]


def relative_lift(x_t: int, n_t: int, x_c: int, n_c: int) -> Interval | None:
    """(p_t − p_c) / p_c with a 95 % interval: exp(log(p_t/p_c) ± z·se) − 1, where
    se² = (1 − p_t)/(n_t·p_t) + (1 − p_c)/(n_c·p_c). None when a rate is 0 or undefined."""
    if n_t == 0 or n_c == 0 or x_t == 0 or x_c == 0:
        return None
    p_t, p_c = x_t / n_t, x_c / n_c
    log_ratio = math.log(p_t / p_c)
    se = math.sqrt((1 - p_t) / (n_t * p_t) + (1 - p_c) / (n_c * p_c))
    return Interval(estimate=p_t / p_c - 1, low=math.exp(log_ratio - Z95 * se) - 1,
                    high=math.exp(log_ratio + Z95 * se) - 1)


def difference(x_t: int, n_t: int, x_c: int, n_c: int) -> Interval | None:
    """p_t − p_c with the Agresti–Caffo 95 % interval (one success and one failure added to
    each group for the interval): the plain Wald interval has no width at all when nobody in
    a small holdout bought, and would call a handful of purchases significant. None without
    both groups."""
    if n_t == 0 or n_c == 0:
        return None
    a_t, a_c = (x_t + 1) / (n_t + 2), (x_c + 1) / (n_c + 2)
    se = math.sqrt(a_t * (1 - a_t) / (n_t + 2) + a_c * (1 - a_c) / (n_c + 2))
    return Interval(estimate=x_t / n_t - x_c / n_c, low=a_t - a_c - Z95 * se,
                    high=a_t - a_c + Z95 * se)


def _pct(value: float) -> str:
    return f"{value * 100:+.0f}%"


def verdict(lift: Lift) -> Verdict:
    """A sentence a marketer can act on: significant or not, and by how much."""
    if lift.holdout == 0 or lift.targets == 0:
        return Verdict("no_holdout", N_("No holdout: this campaign's audience has no "
                                        "comparison group, so its lift cannot be measured."),
                       {})
    if lift.relative is not None:
        r = lift.relative
        params = {"lift": _pct(r.estimate), "margin": f"{r.half_width * 100:.0f}%",
                  "low": _pct(r.low), "high": _pct(r.high)}
        if r.significant:
            return Verdict("significant", N_("{lift} ± {margin} (95% interval {low} to "
                                             "{high})."), params)
        return Verdict("not_significant", N_("Not yet significant: {lift}, but the 95% "
                                             "interval runs from {low} to {high}."), params)
    d = lift.difference
    assert d is not None
    params = {"points": f"{d.estimate * 100:+.1f}", "low": f"{d.low * 100:+.1f}",
              "high": f"{d.high * 100:+.1f}"}
    if lift.holdout_converted == 0 and lift.targets_converted == 0:
        return Verdict("too_early", N_("Too early to tell: nobody in the audience has bought "
                                       "since it was assigned."), {})
    if d.significant:
        return Verdict("significant", N_("{points} percentage points over the holdout (95% "
                                         "interval {low} to {high}); nobody in the holdout "
                                         "bought, so no percentage lift."), params)
    return Verdict("not_significant", N_("Not yet significant: {points} percentage points, "
                                         "95% interval {low} to {high}."), params)


def campaign_lift(session: Session, actor: Actor, campaign_id: str,
                  now: datetime | None = None) -> Lift:
    """Targets and holdout of the campaign's audience, and how many of each bought."""
    actor.require(Permission.campaigns_read)
    campaign = get_campaign(session, actor, campaign_id)
    now = now or utcnow()
    end = min(as_utc(campaign.ends_at), now) if campaign.ends_at else now
    audience = session.execute(
        select(CampaignParticipant.customer_id, CampaignParticipant.audience_group,
               CampaignParticipant.assigned_at)
        .where(CampaignParticipant.tenant_id == actor.tenant_id,
               CampaignParticipant.campaign_id == campaign.id,
               CampaignParticipant.audience_group.is_not(None))).all()
    if not audience:
        return Lift(0, 0, 0, 0, None, end, None, None)
    survivor, _ = merged_and_erased(session, actor.tenant_id)
    person = {cid: survivor.get(cid, cid) for cid, _, _ in audience}
    people = set(person.values())
    profiles = set(person) | people | {m for m, s in survivor.items() if s in people}
    first_assigned = min(as_utc(at) for _, _, at in audience if at is not None)
    # Every purchase of these people in the window, then per participant: any after their
    # own assignment?
    purchases: dict[str, list[datetime]] = {}
    for customer_id, paid_at in session.execute(
            select(Order.customer_id, Order.paid_at)
            .where(Order.tenant_id == actor.tenant_id, Order.customer_id.in_(profiles),
                   Order.paid_at >= first_assigned, Order.paid_at < end,
                   Order.status != OrderStatus.refunded)).all():
        if customer_id is None:
            continue
        owner = survivor.get(customer_id, customer_id)
        purchases.setdefault(owner, []).append(as_utc(paid_at))
    counts = {AudienceGroup.target: [0, 0], AudienceGroup.holdout: [0, 0]}
    for customer_id, group, assigned_at in audience:
        since = as_utc(assigned_at) if assigned_at is not None else first_assigned
        if group is None:
            continue
        bucket = counts[group]
        bucket[0] += 1
        if any(since <= at for at in purchases.get(person[customer_id], [])):
            bucket[1] += 1
    (n_t, x_t), (n_c, x_c) = counts[AudienceGroup.target], counts[AudienceGroup.holdout]
    return Lift(targets=n_t, targets_converted=x_t, holdout=n_c, holdout_converted=x_c,
                window_start=first_assigned, window_end=end,
                relative=relative_lift(x_t, n_t, x_c, n_c),
                difference=difference(x_t, n_t, x_c, n_c))


@dataclass(frozen=True)
class LiftPage:
    report: CampaignReport
    lift: Lift
    verdict: Verdict


def lift_page(session: Session, actor: Actor, campaign_id: str) -> LiftPage:
    """The funnel (the campaign report) and the lift with its verdict."""
    lift = campaign_lift(session, actor, campaign_id)
    return LiftPage(report=campaign_report(session, actor, campaign_id), lift=lift,
                    verdict=verdict(lift))
