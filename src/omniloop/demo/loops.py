"""Demo data of the in-store loop: touchpoints in every store, a month of scans, feedback,
review clicks, LINE follows and shares, and referral chains whose friends came to a store.

Like the demo campaigns: everything goes through the services (touchpoints, identify,
feedback, referrals, POS redemption) with the demo's system actor, at moments in the
history's last 30 days (the services take `now=`), so the loop report of the last month
tells a story without a line of special code. One seeded generator and members read in
phone order make every load alike; ids, codes and device ids of the touchpoints' QR codes
are the only things drawn at random. Scans are stored as the recorder stores them
(`qr_scan` events with the touchpoint and an anonymous device id), written here in the
caller's transaction instead of a moment later.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from omniloop.campaigns.models import CampaignKind, Coupon
from omniloop.campaigns.redemption import redeem
from omniloop.campaigns.schemas import CampaignCreate, RedeemIn
from omniloop.campaigns.service import create_campaign, launch_campaign
from omniloop.core.db import Session
from omniloop.customers.events import record_event
from omniloop.customers.identify import identify
from omniloop.customers.models import Customer, CustomerIdentity, IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.demo import data
from omniloop.demo.history import HISTORY_END
from omniloop.loops import touchpoints as tp_service
from omniloop.loops.feedback import submit_feedback
from omniloop.loops.models import Placement, Purpose, Touchpoint
from omniloop.loops.program import ProgramData, update_program
from omniloop.loops.referrals import code_for, refer
from omniloop.orders.models import Order
from omniloop.tenancy.access import Actor

SEED = 6
TABLES = 6
DAYS = 30
WELCOME = "好友推薦見面禮 NT$60"
LINE_URL = "https://line.me/R/ti/p/@beanhouse-demo"
COMMENTS_GOOD = ("拿鐵很香，座位舒服", "店員很親切", "甜點好吃，會再來", "環境安靜適合工作",
                 "手沖很有水準")
COMMENTS_BAD = ("等了二十分鐘才拿到飲料", "桌子沒擦乾淨", "冷氣太冷", "點錯餐了")
RATINGS = (5, 5, 5, 4, 4, 4, 4, 3, 2, 1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class _Member:
    customer_id: str
    phone: str
    store: str  # store code


def _members(session: Session, tenant_id: str, codes: dict[str, str]) -> list[_Member]:
    """Demo members who bought, by phone (stable across loads), with their home store."""
    buyers = set(session.scalars(select(Order.customer_id).where(
        Order.tenant_id == tenant_id, Order.customer_id.is_not(None)).distinct()))
    rows = session.execute(
        select(Customer.id, Customer.home_store_id, CustomerIdentity.value)
        .join(CustomerIdentity, (CustomerIdentity.tenant_id == Customer.tenant_id)
              & (CustomerIdentity.customer_id == Customer.id))
        .where(Customer.tenant_id == tenant_id, Customer.merged_into_id.is_(None),
               Customer.erased_at.is_(None), CustomerIdentity.kind == IdentityKind.phone)).all()
    return sorted((_Member(customer_id=cid, phone=phone, store=codes[store_id])
                   for cid, store_id, phone in rows
                   if cid in buyers and store_id is not None and store_id in codes),
                  key=lambda m: m.phone)


class _Loader:
    def __init__(self, session: Session, actor: Actor, zone: ZoneInfo,
                 store_ids: dict[str, str]) -> None:
        self.session, self.actor, self.zone, self.store_ids = session, actor, zone, store_ids
        self.rng = random.Random(SEED)
        self.created: Counter[str] = Counter()
        self.tables: dict[str, list[Touchpoint]] = {}
        self.counters: dict[str, Touchpoint] = {}
        self.receipts: dict[str, Touchpoint] = {}
        self.sequence = 0

    def at(self, day: date, minute: int) -> datetime:
        return datetime.combine(day, time(minute // 60, minute % 60), self.zone).astimezone(UTC)

    def moment(self) -> datetime:
        """A visit in the last DAYS days of the history, between 10:00 and 20:59."""
        day = HISTORY_END - timedelta(days=self.rng.randrange(DAYS))
        return self.at(day, self.rng.randrange(10 * 60, 21 * 60))

    def store_visit(self, store: str, after: datetime) -> datetime | None:
        """The first day after `after` (1–9 days on) when the store opens, at a minute of
        its opening hours (not the last half hour); None past the history's end."""
        day = after.astimezone(self.zone).date() + timedelta(days=self.rng.randrange(1, 10))
        spec = next(s for s in data.STORES if s.code == store)
        while day <= HISTORY_END:
            spans = spec.opening_hours[WEEKDAYS[day.weekday()]]
            if spans:
                opening, closing = (int(t[:2]) * 60 + int(t[3:]) for t in (
                    spans[0]["open"], spans[0]["close"]))
                return self.at(day, self.rng.randrange(opening, max(opening + 1,
                                                                     closing - 30)))
            day += timedelta(days=1)
        return None

    def touchpoints(self) -> None:
        for spec in data.STORES:
            store_id = self.store_ids[spec.code]
            review = "https://www.google.com/maps/search/?" + urlencode(
                {"api": "1", "query": f"豆留森林咖啡 {spec.name}"})

            def make(purpose: Purpose, placement: Placement, store_id: str = store_id,
                     **extra: object) -> Touchpoint:
                self.created["touchpoints"] += 1
                return tp_service.create_touchpoint(self.session, self.actor,
                                                    tp_service.TouchpointData(
                    store_id=store_id, placement=placement, purpose=purpose,
                    **extra))  # type: ignore[arg-type]

            self.tables[spec.code] = tp_service.create_tables(
                self.session, self.actor, store_id, 1, TABLES, tp_service.TouchpointData(
                    store_id=store_id, placement=Placement.table, purpose=Purpose.membership,
                    reward_points=20))
            self.created["touchpoints"] += TABLES
            self.counters[spec.code] = make(Purpose.line_follow, Placement.counter,
                                            target_url=LINE_URL)
            self.receipts[spec.code] = make(Purpose.feedback, Placement.receipt,
                                            target_url=review, reward_points=10)
            make(Purpose.referral, Placement.poster)
            make(Purpose.review, Placement.staff_badge, target_url=review)

    def event(self, type_: str, customer_id: str | None, store: str, when: datetime,
              **properties: object) -> None:
        self.sequence += 1
        record_event(self.session, self.actor, client_event_id=f"demo:loops:{self.sequence}",
                     type=type_, channel="offline" if type_ == "qr_scan" else "online",
                     source="touchpoint", customer_id=customer_id,
                     store_id=self.store_ids[store], occurred_at=when,
                     properties=dict(properties))
        if type_ == "qr_scan" and properties.get("touchpoint_id"):
            # What the recorder adds for a real scan (the admin offers to retire, not delete).
            self.session.execute(update(Touchpoint).where(
                Touchpoint.tenant_id == self.actor.tenant_id,
                Touchpoint.id == properties["touchpoint_id"])
                .values(scans=Touchpoint.scans + 1).execution_options(synchronize_session=False))
        self.created["events"] += 1

    def visits(self, members: list[_Member]) -> list[tuple[_Member, datetime]]:
        """Members scan a table, join with their number, and some do more online."""
        count = min(max(len(members) // 4, 6), 150)
        chosen = self.rng.sample(members, min(count, len(members)))
        givers: list[tuple[_Member, datetime]] = []
        for index, member in enumerate(chosen):
            when = self.moment()
            table = self.rng.choice(self.tables[member.store])
            device = f"demo-loop-device-{index:05d}"
            self.event("qr_scan", None, member.store, when, touchpoint_id=table.id,
                       code=table.code, purpose=table.purpose.value, device_id=device)
            identify(self.session, self.actor, [
                IdentityIn(kind=IdentityKind.phone, value=member.phone),
                IdentityIn(kind=IdentityKind.device, value=device)], source="touchpoint")
            if self.rng.random() < 0.6:
                rating = self.rng.choice(RATINGS)
                submit_feedback(
                    self.session, self.actor, customer_id=member.customer_id, rating=rating,
                    nps=min(10, max(0, rating * 2 + self.rng.randrange(-1, 2))),
                    comment=self.rng.choice(COMMENTS_GOOD if rating >= 4 else COMMENTS_BAD),
                    store_id=self.store_ids[member.store], touchpoint_id=table.id,
                    now=when + timedelta(minutes=3))
                self.created["feedback"] += 1
                givers.append((member, when))
                if self.rng.random() < 0.45:  # invited to review, as every respondent is
                    receipt = self.receipts[member.store]
                    self.event("review_clicked", member.customer_id, member.store,
                               when + timedelta(minutes=4), touchpoint_id=receipt.id,
                               code=receipt.code)
            if self.rng.random() < 0.25:
                self.event("line_follow", member.customer_id, member.store,
                           when + timedelta(minutes=2))
            if self.rng.random() < 0.15:
                self.event("share", member.customer_id, member.store,
                           when + timedelta(minutes=6))
        for index in range(count // 3):  # people who only looked
            store = self.rng.choice(data.STORES).code
            table = self.rng.choice(self.tables[store])
            self.event("qr_scan", None, store, self.moment(), touchpoint_id=table.id,
                       code=table.code, purpose=table.purpose.value,
                       device_id=f"demo-loop-looker-{index:05d}")
        return givers

    def referrals(self, givers: list[tuple[_Member, datetime]]) -> None:
        """Some members bring friends; most friends come to a store; a few bring theirs."""
        campaign = create_campaign(self.session, self.actor, CampaignCreate(
            name=WELCOME, kind=CampaignKind.amount_off, value_minor=6000,
            starts_at=self.at(HISTORY_END - timedelta(days=DAYS + 5), 0),
            per_customer_limit=1, coupon_valid_days=30,
            description="朋友推薦你來！第一次到店消費現折 NT$60。",
            terms="限第一次消費的新朋友，每人限領一次；領取後 30 天內於全台門市使用。"))
        launch_campaign(self.session, self.actor, campaign.id)
        update_program(self.session, self.actor, ProgramData(
            welcome_campaign_id=campaign.id, make_good_campaign_id=None, qualify_days=30,
            monthly_cap=5, referrer_points=100, friend_points=50))
        referrers = givers[:max(2, len(givers) // 5)]
        friend = 0
        for member, when in sorted(referrers, key=lambda g: g[1]):
            level = (member.customer_id, member.store, when)
            for depth in range(2):  # a friend of a friend: a chain of two
                customer_id, store, since = level
                brought = None
                for _ in range(self.rng.choice((1, 1, 2))):
                    friend += 1
                    signed_up = since + timedelta(hours=self.rng.randrange(2, 72))
                    if signed_up.date() > HISTORY_END:
                        break
                    result = refer(self.session, self.actor, code_for(
                        self.session, self.actor, customer_id),
                        f"0955{friend:06d}", None, now=signed_up)
                    self.created["referrals"] += 1
                    self.created["customers"] += 1  # every friend is someone new
                    if self.rng.random() < 0.7:
                        visit = self.store_visit(store, signed_up)
                        if visit is not None:
                            code = self.session.scalar(select(Coupon.code).where(
                                Coupon.tenant_id == self.actor.tenant_id,
                                Coupon.id == result.coupon.id))
                            redeem(self.session, self.actor, RedeemIn(
                                code=code or "", store_code=store, basket_total_minor=22000,
                                staff=data.STORES[0].name), f"demo-loop-referral-{friend}",
                                now=visit)
                            self.created["redemptions"] += 1
                            brought = (result.friend_id, store, visit)
                if brought is None or depth == 1 or self.rng.random() < 0.5:
                    break
                level = brought


def load_loops(session: Session, actor: Actor, *, timezone: str,
               store_ids: dict[str, str]) -> dict[str, int]:
    """Touchpoints and a month of loop activity, once (nothing when touchpoints exist)."""
    if session.scalar(select(func.count()).select_from(Touchpoint).where(
            Touchpoint.tenant_id == actor.tenant_id)):
        return {}
    loader = _Loader(session, actor, ZoneInfo(timezone), store_ids)
    loader.touchpoints()
    members = _members(session, actor.tenant_id, {v: k for k, v in store_ids.items()})
    if members:
        loader.referrals(loader.visits(members))
    return dict(loader.created)
