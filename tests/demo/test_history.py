"""The demo history has the shapes the analytics need, and is the same on every load."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from omniloop.core.clock import to_local
from omniloop.core.db import Session
from omniloop.customers.models import Customer, CustomerIdentity, CustomerMerge, Event
from omniloop.demo import load_demo
from omniloop.demo.campaigns import new_members
from omniloop.demo.history import HISTORY_END
from omniloop.loops.models import Referral
from omniloop.orders.models import Order, OrderChannel

CUSTOMERS = 120




def test_history_shapes(session: Session) -> None:
    load_demo(session, customers=CUSTOMERS)
    session.commit()
    live = session.scalars(select(Customer).where(Customer.merged_into_id.is_(None))).all()
    friends = session.scalar(select(func.count()).select_from(Referral))  # demo/loops.py
    # + joined for the welcome coupon, + friends referred in the in-store loop
    assert len(live) == CUSTOMERS + new_members(CUSTOMERS) + (friends or 0)
    kinds_by_customer: dict[str, set[str]] = {}
    for identity in session.scalars(select(CustomerIdentity)):
        kinds_by_customer.setdefault(identity.customer_id, set()).add(identity.kind.value)
    profiles = Counter(frozenset(k) for k in kinds_by_customer.values())
    assert any("pos_card" in k and "ecommerce" not in k for k in profiles)  # stores only
    assert any("ecommerce" in k and "pos_card" not in k for k in profiles)  # online only
    assert any({"pos_card", "ecommerce"} <= k for k in profiles)  # both
    assert (session.scalar(select(func.count()).select_from(CustomerMerge)) or 0) >= 1

    orders = session.scalars(select(Order)).all()
    assert len(orders) > 2 * CUSTOMERS
    months = {(o.paid_at.year, o.paid_at.month) for o in orders}
    assert len(months) >= 17
    assert max(o.paid_at for o in orders).date() <= HISTORY_END
    channels = Counter(o.channel for o in orders)
    assert channels[OrderChannel.store] > channels[OrderChannel.online] > 0
    per_customer = Counter(o.customer_id for o in orders)
    assert max(per_customer.values()) >= 5 * (sum(per_customer.values()) / len(per_customer)) / 2
    hours = Counter(to_local(o.paid_at, "Asia/Taipei").hour for o in orders)
    assert hours[8] > hours[19]  # breakfast beats the evening
    by_month = Counter(to_local(o.paid_at, "Asia/Taipei").month for o in orders)
    assert by_month[12] + by_month[7] > by_month[2] + by_month[3]
    purchase_events = session.scalar(select(func.count()).select_from(Event)
                                     .where(Event.type == "purchase"))
    assert purchase_events == len(orders)
    touchpoints = session.scalar(select(func.count()).select_from(Event)
                                 .where(Event.type.in_(("line_follow", "qr_scan"))))
    assert (touchpoints or 0) > 0


def test_people_are_the_same_on_every_load() -> None:
    import random

    from omniloop.demo.history import SEED, _people

    codes = ["TPE-XINYI", "NTP-BANQIAO"]
    assert _people(random.Random(SEED), 60, codes) == _people(random.Random(SEED), 60, codes)
