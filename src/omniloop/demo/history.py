"""Demo customers and their history: who they are, what they bought over 18 months, and the
touchpoints around it.

Everything comes from one seeded random generator and a fixed calendar (the history ends on
`HISTORY_END`), so two loads produce the same people and orders. The shapes are what the
analytics need to show something true-looking: members who buy only in stores (a POS
card), only online, or both; purchase rates that differ a lot between people and people who
stop coming (for RFM and CLV); more orders in summer and December and at weekends, around
breakfast, lunch and afternoon tea; and a few profiles that were created twice and merged.

All writes go through the same services the API uses (identify, ingest_order, record_event).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from omniloop.catalog.models import Product
from omniloop.core.db import Session
from omniloop.customers.events import record_event
from omniloop.customers.identify import identify
from omniloop.customers.models import IdentityKind
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.orders.models import Order
from omniloop.orders.schemas import OrderIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import Actor

HISTORY_END = date(2026, 11, 24)
HISTORY_DAYS = 548  # about 18 months
DEMO_SOURCES = ("demo-pos", "demo-shop")
SEED = 20261125

SURNAMES = "陳林黃張李王吳劉蔡楊許鄭謝郭洪曾邱廖賴周徐蘇葉莊呂江何蕭羅高"
GIVEN = ("怡君", "雅婷", "志明", "家豪", "詩涵", "宗翰", "欣怡", "冠宇", "佳穎", "俊傑", "淑芬",
         "建宏", "美玲", "承恩", "宜庭", "柏翰", "思妤", "彥廷", "品妍", "子晴", "威廷", "郁婷",
         "冠廷", "筱涵", "家瑋", "婉婷", "哲瑋", "雅雯", "振宇", "心怡")
# Relative order volume by month (1 = January): the Lunar New Year dip, iced drinks in
# summer, and the gift season in December.
MONTH_FACTOR = {1: 1.1, 2: 0.85, 3: 0.95, 4: 1.0, 5: 1.05, 6: 1.15, 7: 1.25, 8: 1.2,
                9: 1.0, 10: 1.0, 11: 1.05, 12: 1.3}
# When cafés are busy (local time): breakfast, lunch, afternoon tea.
HOUR_WEIGHTS = {7: 6, 8: 10, 9: 7, 10: 4, 11: 5, 12: 9, 13: 8, 14: 5, 15: 8, 16: 6, 17: 4,
                18: 3, 19: 2, 20: 1}
CATEGORY_WEIGHTS = {"咖啡": 10, "茶飲": 5, "輕食": 4, "甜點": 4, "咖啡豆": 1, "周邊商品": 0.5}


@dataclass
class Person:
    index: int
    name: str
    kind: str  # offline | online | both
    home_store: str  # store code
    rate: float  # orders per month while active
    first_day: int
    last_day: int
    phone: str
    card: str | None
    email: str | None
    line_id: str | None
    shop_id: str | None
    birthday: date
    gender: str
    merged_story: bool  # first seen twice, joined later (shows a merge on the 360 page)


def _people(rng: random.Random, count: int, store_codes: list[str]) -> list[Person]:
    people = []
    for index in range(count):
        kind = rng.choices(("offline", "both", "online"), weights=(35, 45, 20))[0]
        first = int(rng.random() ** 1.6 * (HISTORY_DAYS - 30))  # more long-time members
        lifetime = rng.expovariate(1 / 420)
        gender = rng.choice(("female", "female", "male", "male", "other"))
        given = rng.choice(GIVEN)
        people.append(Person(
            index=index, name=rng.choice(SURNAMES) + given, kind=kind,
            home_store=rng.choice(store_codes),
            rate=min(8.0, rng.gammavariate(0.7, 0.65)), first_day=first,
            last_day=min(HISTORY_DAYS, int(first + lifetime)),
            phone=f"09{rng.randrange(10, 99)}{index:06d}"[:10],
            card=f"BH{index + 100000}" if kind != "online" else None,
            email=f"member{index:05d}@example.com" if kind != "offline" or index % 4 == 0
            else None,
            line_id=("U" + f"{rng.getrandbits(128):032x}") if kind != "offline" and index % 3
            else None,
            shop_id=f"SHOP-{index:06d}" if kind != "offline" else None,
            birthday=date(rng.randrange(1965, 2005), rng.randrange(1, 13), rng.randrange(1, 29)),
            gender=gender, merged_story=(kind == "both" and index % 20 == 0)))
    return people


def _order_days(rng: random.Random, person: Person) -> list[int]:
    days = []
    start = HISTORY_END - timedelta(days=HISTORY_DAYS)
    for day in range(person.first_day, person.last_day):
        when = start + timedelta(days=day)
        expected = person.rate / 30 * MONTH_FACTOR[when.month] * (
            1.3 if when.weekday() >= 5 else 0.9)
        if rng.random() < expected:
            days.append(day)
    return days or [person.first_day]


def load_history(session: Session, actor: Actor, *, timezone: str, store_ids: dict[str, str],
                 customers: int,
                 on_progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Create the demo customers with their orders and touchpoints, once.

    Returns counts of what this call created; nothing when the history is there already (it
    is written in one transaction, so it is either wholly present or absent).
    """
    already = session.scalar(select(func.count()).select_from(Order).where(
        Order.tenant_id == actor.tenant_id, Order.source.in_(DEMO_SOURCES)))
    if already:
        return {}
    rng = random.Random(SEED)
    products = list(session.scalars(select(Product).where(
        Product.tenant_id == actor.tenant_id, Product.active.is_(True)).order_by(Product.sku)))
    weights = [CATEGORY_WEIGHTS.get(p.category, 1) for p in products]
    zone = ZoneInfo(timezone)
    start = HISTORY_END - timedelta(days=HISTORY_DAYS)
    people = _people(rng, customers, sorted(store_ids))
    hours, hour_weights = zip(*HOUR_WEIGHTS.items(), strict=True)
    created = {"customers": 0, "orders": 0, "events": 0, "merges": 0}
    for done, person in enumerate(people, start=1):
        customer_id = _identify_person(session, actor, person, store_ids, created)
        for day in _order_days(rng, person):
            when = datetime.combine(start + timedelta(days=day), datetime.min.time(), zone)
            paid_at = when.replace(hour=rng.choices(hours, hour_weights)[0],
                                   minute=rng.randrange(60)).astimezone(UTC)
            online = person.kind == "online" or (person.kind == "both" and rng.random() < 0.2)
            store = person.home_store if rng.random() < 0.8 else rng.choice(sorted(store_ids))
            picked = rng.choices(products, weights, k=rng.choice((1, 1, 2, 2, 3)))
            lines = [{"sku": p.sku, "quantity": 1 if p.category in ("咖啡豆", "周邊商品")
                      else rng.choice((1, 1, 1, 2)), "unit_price_minor": p.price_minor}
                     for p in picked]
            discount = 2000 if rng.random() < 0.08 else 0  # NT$20, below any item's price
            order, _ = ingest_order(session, actor, OrderIn.model_validate({
                "external_id": f"DEMO-{person.index:05d}-{day:03d}",
                "source": DEMO_SOURCES[1] if online else DEMO_SOURCES[0],
                "channel": "online" if online else "store",
                "store_code": None if online else store, "customer_id": customer_id,
                "lines": lines, "discount_minor": discount,
                "paid_at": paid_at.isoformat()}))
            created["orders"] += 1
            if not online and rng.random() < 0.25:
                record_event(session, actor, client_event_id=f"demo:scan:{order.id}",
                             type="qr_scan", channel="offline", source="table",
                             customer_id=customer_id, store_id=store_ids[store],
                             occurred_at=paid_at + timedelta(minutes=3),
                             properties={"placement": "table"})
                created["events"] += 1
        if on_progress is not None:
            on_progress(done, len(people))
    return created


def _identify_person(session: Session, actor: Actor, person: Person,
                     store_ids: dict[str, str], created: dict[str, int]) -> str:
    joined = (HISTORY_END - timedelta(days=HISTORY_DAYS - person.first_day))
    traits = Traits(name=person.name, birthday=person.birthday, gender=person.gender,
                    home_store_id=store_ids[person.home_store], language="zh_TW",
                    tags=["member"] if person.kind != "online" else ["online"])
    identities = [IdentityIn(kind=IdentityKind.phone, value=person.phone)]
    if person.card:
        identities.append(IdentityIn(kind=IdentityKind.pos_card, value=person.card))
    if person.email:
        identities.append(IdentityIn(kind=IdentityKind.email, value=person.email))
    if person.line_id:
        identities.append(IdentityIn(kind=IdentityKind.line, value=person.line_id))
    if person.shop_id:
        identities.append(IdentityIn(kind=IdentityKind.ecommerce, value=person.shop_id))
    if person.merged_story and person.card and person.line_id:
        # Met at the counter with a card, later online through LINE, joined when they
        # showed the card while logged in: two profiles, one merge.
        identify(session, actor, [IdentityIn(kind=IdentityKind.pos_card, value=person.card)],
                 Traits(name=person.name), source="pos")
        identify(session, actor, [IdentityIn(kind=IdentityKind.line, value=person.line_id)],
                 Traits(birthday=person.birthday), source="line")
        created["merges"] += 1
    result = identify(session, actor, identities, traits,
                      source="pos" if person.kind != "online" else "shop")
    created["customers"] += 1
    if person.line_id:
        record_event(session, actor, client_event_id=f"demo:follow:{person.index}",
                     type="line_follow", channel="online", source="line",
                     customer_id=result.customer.id,
                     occurred_at=datetime.combine(joined, datetime.min.time(), UTC)
                     + timedelta(hours=12), properties={})
        created["events"] += 1
    return result.customer.id

