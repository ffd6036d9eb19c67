"""Demo campaigns: eight offers of the café chain in every state, with their claims and
redemptions over the history's last months.

Why it looks the way it does:

* Everything goes through the campaign services (`create_campaign`, `launch_campaign`,
  `claim_coupon`, `redeem`, `void_redemption`, …) with the demo's system actor, never raw
  rows, so the demo obeys every rule the POS and the claim pages obey: windows, validity,
  weekday hours, minimum spend, quotas, per-customer limits, new-customers-only. The one
  exception is the record of the pre-generated code batches (`code_batches`), for which no
  service exists yet; their codes themselves come from `codes.generate_codes`.
* Claims and redemptions happen in the past: the services take `now=`, and every moment is
  chosen inside the campaign's window, the coupon's validity and the store's opening hours,
  before the history's end (`HISTORY_END`). Which status a campaign shows is decided by the
  real clock (`rules.current_status`), so the running ones are open-ended or end in the
  future, the ended one had its end moved into the spring once its story was written, and
  the scheduled one starts next Monday counted from the day of loading.
* One seeded generator of its own (the history's generator is left exactly as it was) and
  members read back in a fixed order (by phone number) make two loads alike: the same
  campaigns, claims, redemptions, baskets and times. Only what must be random stays random:
  ids, coupon codes (drawn from the OS's CSPRNG) and the QR tokens.
* Volumes follow the number of demo members, with a floor so that even a small demo shows
  each campaign at work and a cap (about 200 claims from 1,500 members on) because every
  claim and redemption is a full service call of a few milliseconds: the demo loads a few
  seconds slower for them, not minutes.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from omniloop.campaigns.claims import assign_audience, claim_coupon
from omniloop.campaigns.codes import generate_codes, parse_pattern, require_room
from omniloop.campaigns.models import (
    BatchStatus,
    Campaign,
    CampaignKind,
    CodeBatch,
    CodeMode,
    Redemption,
    Stacking,
)
from omniloop.campaigns.redemption import redeem, void_redemption
from omniloop.campaigns.schemas import (
    Attribution,
    CampaignCreate,
    CampaignUpdate,
    ClaimIn,
    RedeemIn,
)
from omniloop.campaigns.service import (
    create_campaign,
    launch_campaign,
    pause_campaign,
    update_campaign,
)
from omniloop.catalog.models import Product
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.tokens import TokenKind, sign_token
from omniloop.customers.events import record_event
from omniloop.customers.identify import identify
from omniloop.customers.models import Customer, CustomerIdentity, IdentityKind
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.demo import data
from omniloop.demo.history import GIVEN, HISTORY_END, HOUR_WEIGHTS, SURNAMES
from omniloop.demo.history import SEED as HISTORY_SEED
from omniloop.orders.models import Order
from omniloop.tenancy.access import Actor
from omniloop.tenancy.models import Role

__all__ = ["NAMES", "SEED", "load_campaigns", "new_members"]

SEED = HISTORY_SEED + 1
# One new member joined through the welcome coupon per 40 demo members, at most 40: like
# every volume here it is capped, so a bigger demo does not take longer to load for it.
NEW_MEMBERS_PER = 40
NEW_MEMBERS_MAX = 40

WELCOME = "新會員迎賓 NT$50 折價券"
AFTERNOON = "平日午茶 咖啡第二杯半價"
SPRING = "SPRING100 春季滿千折百"
ANNIVERSARY = "週年慶 NT$300 抵用券"
CROISSANT = "LINE 好友早餐 免費可頌"
WINBACK = "好久不見 回店禮 NT$80 折價券"
CHRISTMAS = "聖誕交換禮物 滿 NT$800 送隨行杯"
BEANS = "冬日咖啡豆 85 折"
NAMES = (SPRING, WELCOME, AFTERNOON, CROISSANT, ANNIVERSARY, WINBACK, BEANS, CHRISTMAS)

WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# When people open a LINE message or an ad and claim (local hour): lunch and the evening.
CLAIM_HOUR_WEIGHTS = {8: 2, 9: 2, 10: 2, 11: 3, 12: 6, 13: 5, 14: 3, 15: 3, 16: 3, 17: 4,
                      18: 5, 19: 6, 20: 7, 21: 7, 22: 5, 23: 2}
CASHIERS = {spec.store_codes[0]: spec.name for spec in data.STAFF if spec.role == Role.cashier}
STORE_SPECS = {spec.code: spec for spec in data.STORES}


def new_members(customers: int) -> int:
    """How many people, beyond the `customers` demo members, join through the welcome coupon.

    The welcome coupon is for new customers only, and every demo member has bought already,
    so its claims come from people who sign up for it; the demo's customer count grows by
    this many.
    """
    return min(customers // NEW_MEMBERS_PER, NEW_MEMBERS_MAX)


@dataclass(frozen=True)
class Member:
    customer_id: str
    phone: str
    line_id: str | None
    home_store: str  # store code
    first_paid: datetime
    last_paid: datetime


@dataclass(frozen=True)
class Claimed:
    """What a later redemption needs of a claim (the ORM coupon is expired by then)."""

    coupon_id: str
    code: str | None
    customer_id: str
    claimed_at: datetime
    valid_until: datetime | None
    store: str  # the store the person would go to


@dataclass(frozen=True)
class Rules:
    """The parts of a campaign that decide when and where it can be redeemed."""

    ends_at: datetime | None
    weekdays: tuple[int, ...] = ()
    hours: tuple[int, int] | None = None  # minutes of the local day, end excluded


def load_campaigns(session: Session, actor: Actor, *, timezone: str,
                   store_ids: dict[str, str], customers: int) -> dict[str, int]:
    """Create the demo campaigns with their codes, claims and redemptions, once.

    Needs the history (the claimants are its members). Returns counts of what this call
    created; nothing when the campaigns are there already (they are written in one
    transaction, so they are wholly present or absent).
    """
    already = session.scalar(select(func.count()).select_from(Campaign).where(
        Campaign.tenant_id == actor.tenant_id, Campaign.name.in_(NAMES)))
    if already:
        return {}
    members = _members(session, actor.tenant_id, {v: k for k, v in store_ids.items()})
    if not members:
        return {}
    loader = _Loader(session, actor, ZoneInfo(timezone), store_ids, members)
    loader.spring()
    loader.welcome(new_members(customers))
    loader.afternoon()
    loader.croissant()
    loader.anniversary()
    loader.winback()
    loader.beans()
    loader.christmas()
    return dict(loader.created)


def _members(session: Session, tenant_id: str, store_codes: dict[str, str]) -> list[Member]:
    """The demo members who bought, in phone order (stable across loads, unlike ids)."""
    paid = {customer_id: (first, last) for customer_id, first, last in session.execute(
        select(Order.customer_id, func.min(Order.paid_at), func.max(Order.paid_at))
        .where(Order.tenant_id == tenant_id, Order.customer_id.is_not(None))
        .group_by(Order.customer_id))}
    identities: dict[str, dict[IdentityKind, str]] = {}
    for customer_id, kind, value in session.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.kind, CustomerIdentity.value)
            .where(CustomerIdentity.tenant_id == tenant_id,
                   CustomerIdentity.kind.in_([IdentityKind.phone, IdentityKind.line]))):
        identities.setdefault(customer_id, {})[kind] = value
    members = []
    for customer in session.scalars(select(Customer).where(
            Customer.tenant_id == tenant_id, Customer.merged_into_id.is_(None),
            Customer.erased_at.is_(None))):
        known = identities.get(customer.id, {})
        if customer.id not in paid or IdentityKind.phone not in known:
            continue
        first, last = paid[customer.id]
        members.append(Member(
            customer_id=customer.id, phone=known[IdentityKind.phone],
            line_id=known.get(IdentityKind.line),
            home_store=store_codes.get(customer.home_store_id or "", data.STORES[0].code),
            first_paid=as_utc(first), last_paid=as_utc(last)))
    return sorted(members, key=lambda m: m.phone)


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class _Loader:
    def __init__(self, session: Session, actor: Actor, zone: ZoneInfo,
                 store_ids: dict[str, str], members: list[Member]) -> None:
        self.session = session
        self.actor = actor
        self.zone = zone
        self.store_ids = store_ids
        self.stores = sorted(store_ids)
        self.members = members
        self.rng = random.Random(SEED)
        self.created: Counter[str] = Counter()
        self.cutoff = self.at(HISTORY_END + timedelta(days=1), 0)  # the history's "now"
        self.products = list(session.scalars(select(Product).where(
            Product.tenant_id == actor.tenant_id, Product.active.is_(True))
            .order_by(Product.sku)))
        self.by_sku = {p.sku: p for p in self.products}
        self.sequence = 0

    # --- time -------------------------------------------------------------------------

    def at(self, day: date, minute: int) -> datetime:
        """A local day and minute of the day, in UTC."""
        return datetime.combine(day, time(minute // 60, minute % 60),
                                self.zone).astimezone(UTC)

    def local_day(self, moment: datetime) -> date:
        return to_local(moment, str(self.zone)).date()

    def open_span(self, store: str, day: date) -> tuple[int, int] | None:
        spans = STORE_SPECS[store].opening_hours[WEEKDAY_KEYS[day.weekday()]]
        if not spans:
            return None
        return _minutes(spans[0]["open"]), _minutes(spans[0]["close"])

    def visit_minute(self, store: str, day: date, rules: Rules) -> int | None:
        """A minute of `day` when a customer could be served at `store` under `rules`,
        busier hours likelier; None when there is none (closed, wrong weekday)."""
        if rules.weekdays and day.weekday() not in rules.weekdays:
            return None
        span = self.open_span(store, day)
        if span is None:
            return None
        low, high = span[0], span[1] - 10  # nobody is served in the last ten minutes
        if rules.hours is not None:
            low, high = max(low, rules.hours[0]), min(high, rules.hours[1] - 1)
        if high <= low:
            return None
        hours = list(range(low // 60, high // 60 + 1))
        hour = self.rng.choices(hours, [HOUR_WEIGHTS.get(h, 1) for h in hours])[0]
        return self.rng.randint(max(low, hour * 60), min(high, hour * 60 + 59))

    def fits(self, store: str, moment: datetime, rules: Rules) -> bool:
        local = to_local(moment, str(self.zone))
        span = self.open_span(store, local.date())
        minute = local.hour * 60 + local.minute
        if span is None or not span[0] <= minute < span[1] - 10:
            return False
        if rules.weekdays and local.weekday() not in rules.weekdays:
            return False
        return rules.hours is None or rules.hours[0] <= minute < rules.hours[1]

    def claim_time(self, start: datetime, end: datetime | None, front: float = 1.6) -> datetime:
        """A moment in [start, end) when someone claims online: more of them soon after
        the launch (the message goes out), at lunch and in the evening."""
        stop = min(end, self.cutoff) if end is not None else self.cutoff
        days = max((self.local_day(stop) - self.local_day(start)).days, 1)
        day = self.local_day(start) + timedelta(days=int(days * self.rng.random() ** front))
        hours, weights = zip(*CLAIM_HOUR_WEIGHTS.items(), strict=True)
        moment = self.at(day, self.rng.choices(hours, weights)[0] * 60 + self.rng.randrange(60))
        if moment <= start:
            moment = start + timedelta(minutes=self.rng.randrange(30, 240))
        if moment >= stop:
            moment = stop - timedelta(minutes=self.rng.randrange(30, 300))
        return moment

    def visit_time(self, store: str, after: datetime, until: datetime, rules: Rules,
                   mean_days: float) -> datetime | None:
        """When someone who holds a coupon since `after` comes in to use it, or None when
        the tries land outside its validity (the coupon stays unused, as many do)."""
        first_day = self.local_day(after)
        for _ in range(8):
            day = first_day + timedelta(days=int(self.rng.expovariate(1 / mean_days)))
            minute = self.visit_minute(store, day, rules)
            if minute is None:
                continue
            moment = self.at(day, minute)
            if after + timedelta(minutes=5) < moment < until:
                return moment
        return None

    def until(self, claimed: Claimed, rules: Rules) -> datetime:
        ends = [self.cutoff]
        if claimed.valid_until is not None:
            ends.append(as_utc(claimed.valid_until))
        if rules.ends_at is not None:
            ends.append(rules.ends_at)
        return min(ends)

    # --- people -----------------------------------------------------------------------

    def store_for(self, member: Member) -> str:
        return member.home_store if self.rng.random() < 0.75 else self.rng.choice(self.stores)

    def active_members(self, start: datetime, within_days: int = 120) -> list[Member]:
        """Members who had bought before `start` and still came in shortly before it."""
        recent = start - timedelta(days=within_days)
        return [m for m in self.members if m.first_paid < start and m.last_paid >= recent]

    def sample(self, people: Sequence[Member], count: int) -> list[Member]:
        return self.rng.sample(list(people), min(count, len(people)))

    def scaled(self, share: float, floor: int, cap: int) -> int:
        """`share` of the members, at least `floor` (a small demo still shows the campaign
        at work) and at most `cap` (each claim costs a few milliseconds to load)."""
        return min(cap, max(floor, round(share * len(self.members))))

    # --- services ---------------------------------------------------------------------

    def create(self, **fields: Any) -> Campaign:
        campaign = create_campaign(self.session, self.actor, CampaignCreate.model_validate(fields))
        self.created["campaigns"] += 1
        return campaign

    def launch(self, campaign: Campaign) -> Campaign:
        return launch_campaign(self.session, self.actor, campaign.id)

    def claim(self, campaign: Campaign, identities: list[IdentityIn], channel: str,
              attribution: dict[str, str], when: datetime, store: str) -> Claimed:
        result = claim_coupon(self.session, self.actor, campaign.id, ClaimIn(
            identities=identities, channel=channel,
            attribution=Attribution.model_validate(attribution)), now=when)
        self.created["claims"] += 1
        coupon = result.coupon
        return Claimed(coupon_id=coupon.id, code=coupon.code, customer_id=result.customer.id,
                       claimed_at=when, store=store,
                       valid_until=as_utc(coupon.valid_until) if coupon.valid_until else None)

    def claim_member(self, campaign: Campaign, member: Member, channel: str, slug: str,
                     when: datetime) -> Claimed:
        if channel == "line" and member.line_id:
            identities = [IdentityIn(kind=IdentityKind.line, value=member.line_id)]
        else:
            identities = [IdentityIn(kind=IdentityKind.phone, value=member.phone)]
        return self.claim(campaign, identities, channel, self.attribution(channel, slug),
                          when, self.store_for(member))

    def attribution(self, channel: str, slug: str, store: str | None = None) -> dict[str, str]:
        if channel == "line":
            return {"utm_source": "line", "utm_medium": "oa_message", "utm_campaign": slug}
        if channel == "sms":
            return {"utm_source": "sms", "utm_medium": "sms", "utm_campaign": slug}
        if channel == "qr":
            return {"utm_source": "store_qr", "utm_medium": "qr", "utm_campaign": slug,
                    "utm_content": store or "", "touchpoint": "table_tent"}
        source, medium = self.rng.choice((("facebook", "social"), ("instagram", "social"),
                                          ("google", "cpc"), ("newsletter", "email")))
        return {"utm_source": source, "utm_medium": medium, "utm_campaign": slug}

    def redeem(self, campaign: Campaign, code: str, store: str, when: datetime,
               basket: Counter[str], *, customer_id: str | None = None,
               with_order: bool = False) -> Redemption:
        """Use a coupon at the counter; `with_order` records the purchase as an order."""
        self.sequence += 1
        lines = [self.by_sku[sku] for sku in sorted(basket)]
        payload: dict[str, Any] = {
            "code": code, "store_code": store, "customer_id": customer_id,
            "staff": CASHIERS[store],
            "basket_total_minor": sum(p.price_minor * basket[p.sku] for p in lines),
            "lines": [{"sku": p.sku, "category": p.category, "quantity": basket[p.sku],
                       "unit_price_minor": p.price_minor} for p in lines]}
        if with_order:
            payload["order_external_id"] = f"DEMO-CPN-{self.sequence:05d}"
            payload["order_lines"] = [{"sku": p.sku, "quantity": basket[p.sku],
                                       "unit_price_minor": p.price_minor} for p in lines]
            self.created["orders"] += 1
        result = redeem(self.session, self.actor, RedeemIn.model_validate(payload),
                        f"demo-redemption-{self.sequence:05d}", now=when)
        self.created["redemptions"] += 1
        return result.redemption

    def presented(self, claimed: Claimed) -> str:
        """What the cashier scans: the code, or for a shared-code coupon its QR token (valid
        a day from now, as the wallet shows it; the coupon's own validity is checked apart)."""
        if claimed.code is not None:
            return claimed.code
        return sign_token(self.actor.tenant_id, TokenKind.COUPON, claimed.coupon_id,
                          utcnow() + timedelta(days=1))

    def void(self, redemption: Redemption, reason: str) -> datetime:
        when = as_utc(redemption.redeemed_at) + timedelta(minutes=4)
        void_redemption(self.session, self.actor, redemption.id, reason, now=when)
        self.created["voided"] += 1
        return when

    def redeem_claims(self, campaign: Campaign, claims: list[Claimed], rules: Rules,
                      share: float, recipe: str, *, mean_days: float, orders: float,
                      void_reason: str | None = None, redo: bool = False) -> None:
        """Bring a share of the claimed coupons to the counter.

        `orders`: the share whose purchase is recorded as an order. With `void_reason`, the
        first redemption without an order is voided (and, with `redo`, scanned again a few
        minutes later with the right basket).
        """
        voided = void_reason is None
        for claimed in claims:
            if self.rng.random() >= share:
                continue
            store = claimed.store if self.rng.random() < 0.85 else self.rng.choice(self.stores)
            when = self.visit_time(store, claimed.claimed_at, self.until(claimed, rules),
                                   rules, mean_days)
            if when is None:
                continue
            with_order = self.rng.random() < orders
            basket = self.basket(recipe)
            redemption = self.redeem(campaign, self.presented(claimed), store, when, basket,
                                     with_order=with_order)
            if voided or with_order:
                continue
            voided = True
            assert void_reason is not None
            again = self.void(redemption, void_reason) + timedelta(minutes=2)
            if redo and self.fits(store, again, rules) and again < self.until(claimed, rules):
                basket.update(self.basket("dessert"))
                self.redeem(campaign, self.presented(claimed), store, again, basket)

    # --- baskets ----------------------------------------------------------------------

    def pick(self, *categories: str) -> Product:
        return self.rng.choice([p for p in self.products if p.category in categories])

    def total(self, basket: Counter[str]) -> int:
        return sum(self.by_sku[sku].price_minor * n for sku, n in basket.items())

    def basket(self, recipe: str) -> Counter[str]:
        """What a customer buys with each kind of coupon, meeting its minimum spend."""
        rng = self.rng
        basket: Counter[str] = Counter()
        if recipe == "dessert":
            basket[self.pick("甜點").sku] += 1
        elif recipe == "welcome":  # a first visit: a drink, often a bite, NT$150 or more
            basket[self.pick("咖啡", "茶飲").sku] += 1
            while self.total(basket) < 15000 or (len(basket) < 2 and rng.random() < 0.5):
                basket[self.pick("輕食", "甜點").sku] += 1
        elif recipe == "afternoon":  # two coffees, sometimes cake
            basket[self.pick("咖啡").sku] += 1
            basket[self.pick("咖啡").sku] += 1
            if rng.random() < 0.35:
                basket[self.pick("甜點").sku] += 1
        elif recipe == "spring":  # NT$1,000 or more: beans, gear, and a drink
            if rng.random() < 0.6:
                basket[self.pick("咖啡", "茶飲").sku] += 1
            while self.total(basket) < 100000:
                basket[self.pick("咖啡豆", "周邊商品").sku] += 1
        elif recipe == "voucher":  # a NT$300 voucher: a bag of beans or a table's order
            target = rng.randrange(25000, 70000, 500)
            while self.total(basket) < target:
                basket[self.pick(*rng.choices(
                    (("咖啡", "茶飲"), ("輕食", "甜點"), ("咖啡豆",)), (5, 4, 1))[0]).sku] += 1
        elif recipe == "croissant":  # the free croissant with a breakfast drink
            basket["FD-HAM-CROISSANT"] += 1
            basket[self.pick("咖啡", "茶飲").sku] += 1
        elif recipe == "winback":  # NT$200 or more
            basket[self.pick("咖啡", "茶飲").sku] += 1
            while self.total(basket) < 20000:
                basket[self.pick("輕食", "甜點", "咖啡", "茶飲").sku] += 1
        else:
            raise ValueError(recipe)
        return basket

    # --- the campaigns ----------------------------------------------------------------

    def spring(self) -> None:
        """Ended: a shared code with a quota and a minimum spend, in March and April.

        Launched open-ended (a campaign whose end has passed cannot be launched), used in
        the spring with claims into wallets and the code typed at the counter, then given
        its real end, after which the clock reads it as ended.
        """
        start = self.at(date(2026, 3, 1), 0)
        end = self.at(date(2026, 5, 1), 0)
        campaign = self.create(
            name=SPRING, kind=CampaignKind.amount_off, value_minor=10000,
            min_spend_minor=100000, code_mode=CodeMode.shared, shared_code="SPRING100",
            quota=300, per_customer_limit=1, starts_at=start, coupon_valid_until=end,
            claim_channels=["web", "line"],
            description="春季限定！單筆消費滿 NT$1,000 現折 NT$100，咖啡豆、器材一起帶回家。"
                        "結帳時出示錢包 QR 碼，或告訴店員優惠碼 SPRING100。",
            terms="活動期間 2026/3/1–4/30；限量 300 份，用完為止。每位會員限用一次，"
                  "不得與其他優惠併用。")
        self.launch(campaign)
        rules = Rules(ends_at=end)
        claims = [self.claim_member(campaign, member, self.rng.choice(("web", "web", "line")),
                                    "spring100", self.claim_time(start, end, front=1.3))
                  for member in self.sample(self.active_members(start),
                                            self.scaled(0.015, 4, 30))]
        self.redeem_claims(campaign, claims, rules, 0.45, "spring", mean_days=6, orders=0.5)
        claimants = {c.customer_id for c in claims}
        walk_ins = [m for m in self.active_members(start) if m.customer_id not in claimants]
        for member in self.sample(walk_ins, self.scaled(0.015, 3, 30)):
            store = self.store_for(member)
            day = self.local_day(start) + timedelta(days=self.rng.randrange(60))
            minute = self.visit_minute(store, day, rules)
            if minute is None:
                continue
            member_card = self.rng.random() < 0.75  # the others paid without their card
            self.redeem(campaign, "SPRING100", store, self.at(day, minute),
                        self.basket("spring"),
                        customer_id=member.customer_id if member_card else None,
                        with_order=self.rng.random() < 0.5)
        update_campaign(self.session, self.actor, campaign.id, CampaignUpdate(ends_at=end))

    def welcome(self, count: int) -> None:
        """Running: NT$50 off for new customers, codes made at claim, valid 30 days.

        Its claimants are people who join for it (from a table QR code in a store, the LINE
        account or the website), and those who come in record their first order with it.
        """
        start = self.at(date(2026, 6, 1), 0)
        campaign = self.launch(self.create(
            name=WELCOME, kind=CampaignKind.amount_off, value_minor=5000,
            min_spend_minor=15000, new_customers_only=True, coupon_valid_days=30,
            claim_channels=["line", "web", "qr"], code_pattern="NEW-####-####",
            starts_at=start,
            description="歡迎加入豆留咖啡會員！首次消費滿 NT$150 現折 NT$50。",
            terms="限首次消費的新會員，每人限領一次；領取後 30 天內於全台門市使用。"))
        rules = Rules(ends_at=None)
        claims = []
        for index in range(count):
            channel = self.rng.choices(("qr", "line", "web"), (5, 3, 2))[0]
            store = self.rng.choice(self.stores)
            when = self.claim_time(start, None, front=1.0)
            if channel == "qr":  # scanned at a table during a visit, if the store was open
                visit = self.visit_time(store, max(when - timedelta(days=1), start),
                                        self.cutoff, rules, mean_days=1)
                channel, when = ("qr", visit) if visit is not None else ("web", when)
            claims.append(self.join_and_claim(campaign, index, channel, store, when))
        self.redeem_claims(campaign, claims, rules, 0.4, "welcome", mean_days=5, orders=1.0)

    def join_and_claim(self, campaign: Campaign, index: int, channel: str, store: str,
                       when: datetime) -> Claimed:
        """A new member signs up (a profile with name and home store) and claims at once."""
        phone = f"09{self.rng.randrange(10, 99)}{900000 + index:06d}"
        line_id = f"U{self.rng.getrandbits(128):032x}" if channel == "line" else None
        identities = [IdentityIn(kind=IdentityKind.phone, value=phone)]
        if line_id:
            identities.append(IdentityIn(kind=IdentityKind.line, value=line_id))
        customer = identify(self.session, self.actor, identities, Traits(
            name=self.rng.choice(SURNAMES) + self.rng.choice(GIVEN),
            gender=self.rng.choice(("female", "female", "male", "male", "other")),
            birthday=date(self.rng.randrange(1970, 2007), self.rng.randrange(1, 13),
                          self.rng.randrange(1, 29)),
            home_store_id=self.store_ids[store], language="zh_TW", tags=["member"]),
            source=channel).customer
        self.created["customers"] += 1
        if channel in ("line", "qr"):
            record_event(self.session, self.actor,
                         client_event_id=f"demo:{channel}:new:{index}",
                         type="line_follow" if channel == "line" else "qr_scan",
                         channel="online" if channel == "line" else "offline",
                         source="line" if channel == "line" else "table",
                         customer_id=customer.id,
                         store_id=self.store_ids[store] if channel == "qr" else None,
                         occurred_at=when - timedelta(minutes=1),
                         properties={} if channel == "line" else {"placement": "table"})
            self.created["events"] += 1
        return self.claim(campaign, identities[-1:], channel,
                          self.attribution(channel, "welcome", store), when, store)

    def afternoon(self) -> None:
        """Running: 25% off coffee (two cups: the second at half price), capped at NT$90,
        weekdays 14:00–17:00 only. One redemption is voided and scanned again."""
        start = self.at(date(2026, 9, 1), 0)
        campaign = self.launch(self.create(
            name=AFTERNOON, kind=CampaignKind.percent_off, percent_off=25,
            max_discount_minor=9000, min_spend_minor=20000, categories=["咖啡"],
            weekdays=[0, 1, 2, 3, 4], hours_start="14:00", hours_end="17:00",
            claim_channels=["line", "web"], coupon_valid_days=30, budget_minor=2000000,
            code_pattern="PM-####-####", starts_at=start,
            description="平日午後來杯咖啡！咖啡兩杯同享 75 折，等於第二杯半價，最高折 NT$90。",
            terms="週一至週五 14:00–17:00 使用，限咖啡品項，單筆滿 NT$200；"
                  "領取後 30 天內有效，每人限用一次。"))
        rules = Rules(ends_at=None, weekdays=(0, 1, 2, 3, 4),
                      hours=(_minutes("14:00"), _minutes("17:00")))
        claims = [self.claim_member(campaign, member, self.rng.choice(("line", "line", "web")),
                                    "afternoon-coffee", self.claim_time(start, None))
                  for member in self.sample(self.active_members(start),
                                            self.scaled(0.03, 6, 45))]
        self.redeem_claims(campaign, claims, rules, 0.4, "afternoon", mean_days=6,
                           orders=0.4, void_reason="結帳漏刷甜點，作廢後重新刷券", redo=True)

    def croissant(self) -> None:
        """Paused: a free croissant for LINE friends with a breakfast drink, 07:00–11:00;
        paused after its autumn run (the bakery could not keep up)."""
        start = self.at(date(2026, 9, 15), 0)
        campaign = self.launch(self.create(
            name=CROISSANT, kind=CampaignKind.free_item, free_sku="FD-HAM-CROISSANT",
            min_spend_minor=18000, hours_start="07:00", hours_end="11:00",
            claim_channels=["line"], coupon_valid_days=14, code_pattern="CR-####-####",
            starts_at=start,
            description="LINE 好友限定：早上 11 點前點任一飲品，送火腿起司可頌一個。",
            terms="每日 07:00–11:00 使用，單筆滿 NT$180；領取後 14 天內有效，每人限用一次。"))
        rules = Rules(ends_at=None, hours=(_minutes("07:00"), _minutes("11:00")))
        with_line = [m for m in self.active_members(start) if m.line_id]
        claims = [self.claim_member(campaign, member, "line", "free-croissant",
                                    self.claim_time(start, None, front=2.0))
                  for member in self.sample(with_line, self.scaled(0.025, 5, 35))]
        self.redeem_claims(campaign, claims, rules, 0.4, "croissant", mean_days=4, orders=0.5)
        pause_campaign(self.session, self.actor, campaign.id)

    def anniversary(self) -> None:
        """Running: a NT$300 voucher sold on group-buy sites for NT$249, from two batches
        of pre-generated codes; some buyers bought two. One redemption is voided."""
        start = self.at(date(2026, 10, 15), 0)
        end = self.at(date(2027, 2, 1), 0)
        campaign = self.launch(self.create(
            name=ANNIVERSARY, kind=CampaignKind.voucher, value_minor=30000,
            voucher_price_minor=24900, per_customer_limit=5, stacking=Stacking.combinable,
            claim_channels=["web"], code_pattern="BH300-####-####", starts_at=start,
            ends_at=end,
            description="豆留咖啡 8 週年！團購價 NT$249 購買 NT$300 抵用券，全品項皆可折抵。",
            terms="使用期限至 2027/1/31；可與其他優惠併用，不找零、不兌換現金。"))
        self.code_batch(campaign, "BH300-####-####", 2000)
        self.code_batch(campaign, "CORP-####-####", 1000)
        rules = Rules(ends_at=end)
        claims = []
        for member in self.sample(self.active_members(start), self.scaled(0.025, 5, 30)):
            for _ in range(2 if self.rng.random() < 0.15 else 1):
                claims.append(self.claim(
                    campaign, [IdentityIn(kind=IdentityKind.phone, value=member.phone)], "web",
                    {"utm_source": self.rng.choice(("groupbuy", "groupbuy", "facebook")),
                     "utm_medium": "partner", "utm_campaign": "anniversary-voucher"},
                    self.claim_time(start, end, front=2.5), self.store_for(member)))
        self.redeem_claims(campaign, claims, rules, 0.55, "voucher", mean_days=10,
                           orders=0.6, void_reason="顧客改天再用，券退回錢包")

    def code_batch(self, campaign: Campaign, pattern_text: str, count: int) -> None:
        """Pre-generated codes, as handed to a group-buy partner; claims draw from them.

        The batch row is written here because no service records a batch yet; the codes
        come from `codes.generate_codes`, as the admin's would.
        """
        pattern = parse_pattern(pattern_text)
        require_room(pattern, count)
        batch = CodeBatch(tenant_id=self.actor.tenant_id, campaign_id=campaign.id,
                          source="generated", pattern=pattern.text, requested=count,
                          created_count=0, status=BatchStatus.running,
                          created_by=self.actor.label)
        self.session.add(batch)
        self.session.flush()
        stored = generate_codes(self.session.connection(), tenant_id=self.actor.tenant_id,
                                campaign_id=campaign.id, batch_id=batch.id, pattern=pattern,
                                count=count)
        batch.created_count = stored
        batch.status = BatchStatus.done if stored >= count else BatchStatus.failed
        batch.finished_at = utcnow()
        self.session.flush()
        self.created["codes"] += stored

    def winback(self) -> None:
        """Running: NT$80 off for members who stopped coming, sent by LINE or SMS to an
        assigned audience with a 10% holdout, so its lift can be measured."""
        start = self.at(date(2026, 11, 2), 0)
        end = self.at(date(2027, 1, 1), 0)
        campaign = self.launch(self.create(
            name=WINBACK, kind=CampaignKind.amount_off, value_minor=8000,
            min_spend_minor=20000, holdout_share_bp=1000, claim_channels=["line", "sms"],
            coupon_valid_days=21, code_pattern="HI-####-####", starts_at=start, ends_at=end,
            description="好久不見！回來喝杯咖啡吧，單筆滿 NT$200 折 NT$80。",
            terms="領取後 21 天內有效，每人限用一次。"))
        lapsed = [m for m in self.members
                  if start - timedelta(days=365) <= m.last_paid < start - timedelta(days=60)]
        split = assign_audience(self.session, self.actor, campaign.id,
                                [m.customer_id for m in lapsed], draw=self.rng.randrange,
                                now=start - timedelta(hours=14))
        self.created["audience"] += len(split.targets) + len(split.holdout)
        targets = set(split.targets)
        reached = [m for m in lapsed if m.customer_id in targets]
        claims = [self.claim_member(campaign, member, "line" if member.line_id else "sms",
                                    "winback-nov", self.claim_time(start, end, front=2.0))
                  for member in self.sample(reached, min(30, max(2, round(0.06 * len(reached)))))]
        self.redeem_claims(campaign, claims, rules=Rules(ends_at=end), share=0.35,
                           recipe="winback", mean_days=5, orders=0.5)

    def beans(self) -> None:
        """Scheduled: 15% off coffee beans from next Monday (counted from the day of
        loading, so it is scheduled whenever the demo is loaded), for four weeks."""
        today = to_local(utcnow(), str(self.zone)).date()
        start = self.at(today + timedelta(days=7 - today.weekday()), 0)
        self.launch(self.create(
            name=BEANS, kind=CampaignKind.percent_off, percent_off=15, categories=["咖啡豆"],
            code_mode=CodeMode.shared, shared_code="BEANS85", starts_at=start,
            ends_at=start + timedelta(days=28),
            description="冬天在家手沖！全品項咖啡豆 85 折。",
            terms="結帳時告知優惠碼 BEANS85；每人限用一次。"))

    def christmas(self) -> None:
        """Draft: a gift with purchase for Christmas, still being prepared."""
        self.create(
            name=CHRISTMAS, kind=CampaignKind.gift, gift_name="豆留聖誕限定隨行杯",
            min_spend_minor=80000, starts_at=self.at(date(2026, 12, 15), 0),
            ends_at=self.at(date(2026, 12, 26), 0),
            description="交換禮物就選豆留！單筆滿 NT$800 送聖誕限定隨行杯一個。",
            terms="數量有限，送完為止。")
