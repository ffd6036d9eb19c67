"""The loop report: how in-store visitors turn into online members who act and bring
friends, per store and overall, for a date range. Definitions (docs/loops.md, and
../shared/DESIGN.md for the two rates):

Funnel, a cohort of people who scanned a touchpoint (of the store) in the range:

1. **scans** — `qr_scan` events in the range;
2. **identified** — distinct people behind those scans: the scan's profile, or the profile
   its anonymous device id belongs to now (people often identify a minute after scanning);
3. **acted online** — of those, people with an online action in the range: `line_follow`,
   `feedback_submitted`, `review_clicked`, `share` events, or a friend referred;
   `actions` counts the actions themselves, by kind;
4. **referred friends** — referrals made in the range by people of step 2;
5. **first store purchases** — those referrals qualified (the friend's first store purchase)
   in the range; and where the referrals of step 4 stand now: qualified, still pending
   (within their window), or expired (the window passed without a store purchase).

**Offline→online rate** (DESIGN.md): identified in-store purchasers (an order recorded with a
store, or a coupon redeemed at the POS, in the range; at the store for a store's report) who
do an online action (as in step 3) within 14 days after one of those purchases ÷ identified
in-store purchasers.

**Loop coefficient K** (DESIGN.md): new customers acquired through referrals and shares ÷
active customers in the period. Acquired: friends who signed up through a referral in the
range (a shared referral link is how shares bring people; a share without a member's code
names nobody to credit, so it acquires no one we can count); for a store, those referred by
its step-2 cohort. Active: distinct people with any event in the range (at the store).

Everyone is counted as the profile they live in now (merges resolved). The report reads
events by time with a full pass over the brand's events of the range: fine at the scale of
one brand's demo or first year; the analytics issue moves such reads to columnar extracts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from omniloop.campaigns.models import Redemption, RedemptionStatus
from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.customers.models import CustomerIdentity, Event, IdentityKind
from omniloop.customers.profiles import survivor_ids
from omniloop.loops.models import Referral, ReferralStatus
from omniloop.loops.referrals import window_open
from omniloop.orders.models import Order, OrderChannel
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.models import Store

ACTION_TYPES = ("line_follow", "feedback_submitted", "review_clicked", "share")
ACTION_WINDOW = timedelta(days=14)


@dataclass
class LoopFigures:
    store_id: str | None
    store_name: str
    scans: int = 0
    identified: int = 0
    acted: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    referred: int = 0
    first_purchases: int = 0
    # Of the friends referred in the range, where their referral stands now: still within
    # the window, or expired without a store purchase (qualified ones: `qualified_now`).
    referred_pending: int = 0
    referred_expired: int = 0
    qualified_now: int = 0
    purchasers: int = 0
    purchasers_online: int = 0
    acquired: int = 0
    active: int = 0

    @property
    def offline_online_rate(self) -> float | None:
        return self.purchasers_online / self.purchasers if self.purchasers else None

    @property
    def k(self) -> float | None:
        return self.acquired / self.active if self.active else None


@dataclass
class LoopReport:
    start: datetime
    end: datetime
    overall: LoopFigures
    stores: list[LoopFigures]


@dataclass
class _Rows:
    events: list[tuple[str, str | None, str | None, datetime]]  # type, person, store, at
    purchases: list[tuple[str, str | None, datetime]]  # person, store, at
    # referrer, friend, at, qualified at, standing now (pending | qualified | expired)
    referrals: list[tuple[str, str, datetime, datetime | None, str]]


def _load(session: Session, tenant_id: str, start: datetime, end: datetime,
          now: datetime) -> _Rows:
    horizon = end + ACTION_WINDOW
    raw_events = session.execute(
        select(Event.type, Event.customer_id, Event.store_id, Event.occurred_at,
               Event.properties)
        .where(Event.tenant_id == tenant_id, Event.occurred_at >= start,
               Event.occurred_at < horizon)).all()
    devices = {props.get("device_id") for type_, cid, _, _, props in raw_events
               if type_ == "qr_scan" and cid is None and isinstance(props, dict)
               and isinstance(props.get("device_id"), str)}
    owners: dict[str, str] = {}
    if devices:
        found = session.execute(
            select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
                CustomerIdentity.tenant_id == tenant_id,
                CustomerIdentity.kind == IdentityKind.device,
                CustomerIdentity.value.in_(sorted(d for d in devices if d)))).all()
        owners = {str(value): str(customer_id) for value, customer_id in found}
    orders = session.execute(select(Order.customer_id, Order.store_id, Order.paid_at).where(
        Order.tenant_id == tenant_id, Order.channel == OrderChannel.store,
        Order.customer_id.is_not(None), Order.paid_at >= start, Order.paid_at < end)).all()
    redemptions = session.execute(
        select(Redemption.customer_id, Redemption.store_id, Redemption.redeemed_at).where(
            Redemption.tenant_id == tenant_id, Redemption.status == RedemptionStatus.redeemed,
            Redemption.customer_id.is_not(None), Redemption.redeemed_at >= start,
            Redemption.redeemed_at < end)).all()
    referrals = session.execute(
        select(Referral.referrer_id, Referral.friend_id, Referral.created_at,
               Referral.qualified_at, Referral.status, Referral.qualify_by)
        .where(Referral.tenant_id == tenant_id, Referral.created_at < horizon)).all()
    ids: set[str] = set(owners.values())
    ids |= {cid for _, cid, _, _, _ in raw_events if cid}
    ids |= {cid for cid, _, _ in orders if cid} | {cid for cid, _, _ in redemptions if cid}
    ids |= {r for r, *_ in referrals} | {f for _, f, *_ in referrals}
    live = survivor_ids(session, tenant_id, ids)
    events: list[tuple[str, str | None, str | None, datetime]] = []
    for type_, cid, store_id, at, props in raw_events:
        person = cid
        if person is None and type_ == "qr_scan" and isinstance(props, dict):
            person = owners.get(props.get("device_id") or "")
        events.append((type_, live[person] if person else None, store_id, as_utc(at)))
    purchases = [(live[cid], store_id, as_utc(at)) for cid, store_id, at in [*orders,
                                                                           *redemptions] if cid]
    return _Rows(events=events, purchases=purchases, referrals=[
        (live[r], live[f], as_utc(at),
         as_utc(q) if q is not None and status == ReferralStatus.qualified else None,
         _standing(ReferralStatus(status), qualify_by, now))
        for r, f, at, q, status, qualify_by in referrals])


def _standing(status: ReferralStatus, qualify_by: datetime, now: datetime) -> str:
    """As the admin shows it (referrals.shown_status): pending past its window is expired,
    also before the hourly job has marked it."""
    if status == ReferralStatus.pending and not window_open(qualify_by, now):
        return ReferralStatus.expired.value
    return status.value


def _figures(rows: _Rows, start: datetime, end: datetime, store_id: str | None,
             store_name: str) -> LoopFigures:
    def here(store: str | None) -> bool:
        return store_id is None or store == store_id

    def in_range(at: datetime) -> bool:
        return start <= at < end

    figures = LoopFigures(store_id=store_id, store_name=store_name)
    scans = [(person, at) for type_, person, store, at in rows.events
             if type_ == "qr_scan" and here(store) and in_range(at)]
    figures.scans = len(scans)
    cohort = {person for person, _ in scans if person}
    figures.identified = len(cohort)
    actions: dict[str, list[datetime]] = defaultdict(list)  # person → action times
    kinds: Counter[str] = Counter()
    for type_, person, _, at in rows.events:
        if type_ in ACTION_TYPES and person:
            actions[person].append(at)
            if person in cohort and in_range(at):
                kinds[type_] += 1
    for referrer, _, at, _, _ in rows.referrals:
        actions[referrer].append(at)
        if referrer in cohort and in_range(at):
            kinds["referral"] += 1
    figures.actions = dict(kinds)
    figures.acted = sum(1 for person in cohort
                        if any(in_range(at) for at in actions.get(person, ())))
    referred = [(friend, qualified, standing)
                for referrer, friend, at, qualified, standing in rows.referrals
                if referrer in cohort and in_range(at)]
    figures.referred = len(referred)
    figures.first_purchases = sum(1 for _, qualified, _ in referred
                                  if qualified is not None and in_range(qualified))
    standings = Counter(standing for _, _, standing in referred)
    figures.referred_pending = standings[ReferralStatus.pending.value]
    figures.referred_expired = standings[ReferralStatus.expired.value]
    figures.qualified_now = standings[ReferralStatus.qualified.value]
    bought: dict[str, list[datetime]] = defaultdict(list)
    for person, store, at in rows.purchases:
        if here(store) and in_range(at):
            bought[person].append(at)
    figures.purchasers = len(bought)
    figures.purchasers_online = sum(
        1 for person, times in bought.items()
        if any(p <= a <= p + ACTION_WINDOW for p in times for a in actions.get(person, ())))
    figures.acquired = len({friend for referrer, friend, at, _, _ in rows.referrals
                            if in_range(at) and (store_id is None or referrer in cohort)})
    figures.active = len({person for _, person, store, at in rows.events
                          if person and here(store) and in_range(at)})
    return figures


def loop_report(session: Session, actor: Actor, start: datetime, end: datetime,
                store_id: str | None = None, *, now: datetime | None = None) -> LoopReport:
    """The report for [start, end); every store of the brand the actor sees, and overall
    (or one store only, when asked)."""
    actor.require(Permission.campaigns_read)
    start, end = as_utc(start), as_utc(end)
    rows = _load(session, actor.tenant_id, start, end, as_utc(now or utcnow()))
    stores = [s for s in session.scalars(select(Store).where(
        Store.tenant_id == actor.tenant_id).order_by(Store.code)) if actor.sees_store(s.id)]
    if store_id is not None:
        stores = [s for s in stores if s.id == store_id]
    overall = _figures(rows, start, end, None, "")
    return LoopReport(start=start, end=end, overall=overall,
                      stores=[_figures(rows, start, end, s.id, s.name) for s in stores])
