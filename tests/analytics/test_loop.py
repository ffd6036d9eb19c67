"""The loop dashboard: O2O conversion, claim → redemption time and cohort retention, each
recomputed from the raw rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.analytics.loop import loop_dashboard
from omniloop.campaigns.models import Coupon, Redemption, RedemptionStatus
from omniloop.campaigns.redemption import redeem
from omniloop.campaigns.schemas import RedeemIn
from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Session
from omniloop.orders.models import OrderStatus
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.analytics.factories import END, History, make_history, raw_orders, survivor_map
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import fresh, make_staff, make_tenant
from tests.web.admin_helpers import login

TZ = "Asia/Taipei"


@pytest.fixture
def history(session: Session) -> History:
    return make_history(session, make_tenant(session, slug="loopbrand"))


def months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def test_cohorts_equal_the_raw_rows(session: Session, history: History) -> None:
    start, end = END - timedelta(days=300), END
    board = loop_dashboard(session, system_actor(history.tenant.id), start, end)
    owners = survivor_map(session, history.tenant.id)
    orders = sorted((o for o in raw_orders(session, history.tenant.id)
                     if o.customer_id and o.status != OrderStatus.refunded
                     and to_local(o.paid_at, TZ).date() <= end), key=lambda o: o.paid_at)
    first: dict[str, tuple[date, str]] = {}
    seen: dict[str, set[date]] = defaultdict(set)
    for o in orders:
        person = owners[o.customer_id or ""]
        day = to_local(o.paid_at, TZ).date()
        first.setdefault(person, (day, o.channel.value))
        seen[person].add(day.replace(day=1))
    expected: dict[tuple[date, str], list[int]] = {}
    for person, (day, channel) in first.items():
        if day < start:
            continue
        month = day.replace(day=1)
        span = min(months_between(month, end.replace(day=1)), 12) + 1
        row = expected.setdefault((month, channel), [0] + [0] * span)
        row[0] += 1
        for m in seen[person]:
            k = months_between(month, m)
            if 0 <= k < span:
                row[1 + k] += 1
    got = {(c.month, c.first): [c.size, *c.active] for c in board.cohorts}
    assert got == expected
    assert got
    assert all(c.retention(0) == 1.0 for c in board.cohorts)
    assert {c.first for c in board.cohorts} == {"online", "store"}


def test_claims_and_redemptions(session: Session) -> None:
    from tests.tenancy.factories import make_store

    tenant = make_tenant(session)
    make_store(session, tenant, code="TPE02")
    campaign = make_campaign(session, tenant, claim_channels=["line", "web"])
    coupons = [claim_for(session, tenant, campaign, phone=f"0912-345-67{i}",
                         channel="line" if i % 2 else "web") for i in range(5)]
    fresh(session)
    for i, coupon in enumerate(coupons[:2]):
        redeem(session, system_actor(tenant.id), RedeemIn(
            code=coupon.code or "", store_code="TPE02", basket_total_minor=50000), f"k{i}")
    session.commit()
    today = to_local(utcnow(), TZ).date()
    board = loop_dashboard(session, system_actor(tenant.id), today - timedelta(days=7), today)
    fresh(session)
    claimed = list(session.scalars(select(Coupon).where(
        Coupon.tenant_id == tenant.id, Coupon.claim_channel.is_not(None))))
    standing = {r.coupon_id: r for r in session.scalars(select(Redemption).where(
        Redemption.tenant_id == tenant.id, Redemption.status == RedemptionStatus.redeemed))}
    assert board.claimed == len(claimed) == 5
    assert board.redeemed == len(standing) == 2
    assert board.conversion == pytest.approx(2 / 5)
    delays = sorted((standing[c.id].redeemed_at - c.claimed_at).total_seconds() / 86400
                    for c in claimed if c.id in standing and c.claimed_at)
    assert sorted(board.delays_days) == pytest.approx(delays)
    assert board.buckets[0] == 2  # both on the day of the claim
    quartiles = board.delay_quantiles()
    assert quartiles is not None
    assert quartiles[0] <= quartiles[1] <= quartiles[2]


def test_loop_page(client: TestClient, session: Session, history: History) -> None:
    member = make_staff(session, history.tenant, Role.owner)
    assert login(client, member.email, brand=history.tenant.slug).status_code == 303
    page = client.get(f"/admin/analytics/loop?start={END - timedelta(days=300)}&end={END}"
                      "&lang=en")
    assert page.status_code == 200
    assert 'data-first="online"' in page.text
    assert "No coupons were claimed online in this range." in page.text
    bad = client.get("/admin/analytics/loop?start=2026-13-01&lang=en")
    assert bad.status_code == 422
    start = END - timedelta(days=300)
    board = loop_dashboard(session, system_actor(history.tenant.id), start, END)
    exported = client.get(f"/admin/analytics/loop.csv?table=cohorts&start={start}&end={END}")
    lines = exported.text.lstrip("\ufeff").splitlines()
    assert len(lines) - 1 == len(board.cohorts)
    assert lines[1].split(",")[:3] == [board.cohorts[0].month.strftime("%Y-%m"),
                                       board.cohorts[0].first, str(board.cohorts[0].size)]


def test_the_in_store_loop_figures_are_the_loop_reports(client: TestClient,
                                                        session: Session) -> None:
    """One store visitor gives feedback after buying; a table scan stays anonymous. The
    dashboard shows exactly the loop report's figures (tests/loops checks those against the
    raw rows), and says so plainly when there is nothing yet."""
    from omniloop.analytics.rfm import day_end_utc
    from omniloop.customers.models import CustomerIdentity
    from omniloop.loops.models import Purpose
    from omniloop.loops.report import loop_report
    from tests.loops.factories import flush, join, make_shop, make_touchpoint
    from tests.orders.factories import make_order

    shop = make_shop(session)
    today = to_local(utcnow(), TZ).date()
    empty = loop_dashboard(session, system_actor(shop.tenant.id), today, today)
    assert empty.loop is not None
    assert (empty.loop.scans, empty.loop.purchasers, empty.loop.k) == (0, 0, None)

    table = make_touchpoint(session, shop, Purpose.feedback,
                            target_url="https://maps.example/r")
    fresh(session)
    make_order(session, shop.tenant, store_id=shop.store.id, identities=[
        {"kind": "phone", "value": "0912000101"}],
        paid_at=(utcnow() - timedelta(minutes=30)).isoformat())
    person = TestClient(client.app)
    person.get(join(person, table.code, "0912000101", rating="5"))
    TestClient(client.app).get(f"/t/{table.code}")
    flush()
    fresh(session)
    assert session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.value == "+886912000101")) is not None

    yesterday = today - timedelta(days=1)  # the purchase may fall before local midnight
    board = loop_dashboard(session, system_actor(shop.tenant.id), yesterday, today)
    report = loop_report(session, system_actor(shop.tenant.id),
                         day_end_utc(yesterday - timedelta(days=1), TZ), day_end_utc(today, TZ))
    assert board.loop == report.overall
    assert board.loop is not None
    assert (board.loop.purchasers, board.loop.purchasers_online) == (1, 1)
    assert board.loop.scans == 2

    member = make_staff(session, shop.tenant, Role.owner)
    assert login(client, member.email, brand=shop.tenant.slug).status_code == 303
    page = client.get(f"/admin/analytics/loop?start={yesterday}&end={today}&lang=en")
    assert page.status_code == 200
    assert 'data-figure="offline-online"><span class="figure">100.0%' in page.text
    assert "Offline → online rate (1 of 1 store buyers)" in page.text
