"""The campaign report against figures worked out by hand from the rows each test makes:
claims through two channels, redemptions at two stores, one voided, one refund."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from omniloop.campaigns.claims import claim_coupon
from omniloop.campaigns.errors import CampaignNotFound
from omniloop.campaigns.models import Campaign, Coupon, Redemption, RedemptionStatus
from omniloop.campaigns.redemption import redeem, void_redemption
from omniloop.campaigns.report import ListFigures, campaign_report, list_figures
from omniloop.campaigns.schemas import ClaimIn, RedeemIn
from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.core.errors import Forbidden
from omniloop.customers.schemas import IdentityIn
from omniloop.orders.models import Order
from omniloop.orders.refunds import refund
from omniloop.orders.schemas import OrderLineIn, RefundIn
from omniloop.tenancy.access import staff_actor, system_actor
from omniloop.tenancy.models import Role, Store, Tenant
from tests.campaigns.factories import make_campaign, make_codes
from tests.tenancy.factories import fresh, make_store, make_tenant

# Two days ago at 17:30 UTC is 01:30 the next day in Taipei: the day rows must use the
# brand's calendar.
EARLY = (utcnow() - timedelta(days=2)).replace(hour=17, minute=30, second=0, microsecond=0)
LATE = EARLY + timedelta(hours=20)  # 21:30 Taipei, the same local day as EARLY


@dataclass
class Shop:
    tenant: Tenant
    xinyi: Store
    nanjing: Store
    campaign: Campaign


@pytest.fixture
def shop(session: Session) -> Shop:
    tenant = make_tenant(session, name="豆留森林")
    xinyi = make_store(session, tenant, code="TPE01", name="信義店")
    nanjing = make_store(session, tenant, code="TPE02", name="南京店")
    campaign = make_campaign(session, tenant, name="秋季拿鐵",
                             starts_at=(utcnow() - timedelta(days=10)).isoformat())
    return Shop(tenant, xinyi, nanjing, campaign)


def claim(session: Session, shop: Shop, phone: str, channel: str, at: datetime) -> Coupon:
    result = claim_coupon(session, system_actor(shop.tenant.id), shop.campaign.id, ClaimIn(
        identities=[IdentityIn(kind="phone", value=phone)],
        channel=channel), now=at)
    session.commit()
    return result.coupon


def use(session: Session, shop: Shop, code: str, store: Store, at: datetime, key: str,
        price: int = 50000) -> Redemption:
    """Redeem with a one-line order of `price`: the order totals price − NT$100."""
    result = redeem(session, system_actor(shop.tenant.id), RedeemIn(
        code=code, store_code=store.code, basket_total_minor=price, staff="王小明",
        order_lines=[OrderLineIn(sku="CF-LATTE", quantity=1, unit_price_minor=price)]),
        key, now=at)
    session.commit()
    return result.redemption


@pytest.fixture
def activity(session: Session, database: Database, shop: Shop) -> dict[str, Redemption]:
    """Ten printed codes; five claims (three by LINE, two on the web); four redemptions, one
    of them of a printed code nobody claimed, and one voided; one order half refunded."""
    printed = make_codes(database, shop.campaign, 10)
    fresh(session)
    line = [claim(session, shop, f"0912-000-00{i}", "line", EARLY - timedelta(hours=1))
            for i in range(3)]
    web = [claim(session, shop, f"0912-000-10{i}", "web", EARLY - timedelta(hours=1))
           for i in range(2)]
    claimed_codes = {c.code for c in line + web}
    unclaimed = next(code for code in printed if code not in claimed_codes)
    redemptions = {
        "line0": use(session, shop, line[0].code or "", shop.xinyi, EARLY, "r1"),
        "line1": use(session, shop, line[1].code or "", shop.xinyi, EARLY, "r2", price=30000),
        "web0": use(session, shop, web[0].code or "", shop.nanjing, LATE, "r3", price=80000),
        "printed": use(session, shop, unclaimed, shop.nanjing, LATE, "r4", price=20000),
    }
    void_redemption(session, system_actor(shop.tenant.id), redemptions["line1"].id,
                    "按錯了", now=EARLY + timedelta(minutes=5))
    session.commit()
    order = redemptions["web0"].order_id
    assert order is not None
    refund(session, system_actor(shop.tenant.id), order,
           RefundIn(external_id="RF-1", amount_minor=15000))
    session.commit()
    fresh(session)
    return redemptions


def test_report_figures_match_the_rows(session: Session, shop: Shop,
                                       activity: dict[str, Redemption]) -> None:
    report = campaign_report(session, system_actor(shop.tenant.id), shop.campaign.id)

    # The rows themselves, counted independently of the report's queries.
    coupons = list(session.scalars(select(Coupon).where(Coupon.campaign_id == shop.campaign.id)))
    standing = list(session.scalars(select(Redemption).where(
        Redemption.campaign_id == shop.campaign.id,
        Redemption.status == RedemptionStatus.redeemed)))
    assert len(coupons) == 10  # claims took the printed codes first
    assert report.issued == len(coupons) == 10
    assert report.claimed == sum(1 for c in coupons if c.claim_channel) == 5
    assert report.redeemed == len(standing) == 3
    assert report.voided == 1
    # Of the standing redemptions, the printed code was never claimed online.
    assert report.redeemed_from_claims == 2
    assert report.conversion == pytest.approx(2 / 5)
    assert report.discount_minor == sum(r.discount_minor for r in standing) == 3 * 10000
    # Orders: 50000−10000, 80000−10000 less a 15000 refund, 20000−10000; not the voided one.
    assert report.revenue_minor == 40000 + (70000 - 15000) + 10000
    assert report.orders == 3
    orders = {o.id: o for o in session.scalars(select(Order))}
    assert report.revenue_minor == sum(
        orders[r.order_id].total_minor - orders[r.order_id].refunded_minor
        for r in standing if r.order_id)

    channels = {row.channel: row for row in report.by_channel}
    assert set(channels) == {"line", "web"}
    assert (channels["line"].claimed, channels["line"].redeemed) == (3, 1)
    assert channels["line"].conversion == pytest.approx(1 / 3)
    assert (channels["web"].claimed, channels["web"].redeemed) == (2, 1)
    assert channels["web"].conversion == pytest.approx(1 / 2)

    stores = {row.code: row for row in report.by_store}
    assert set(stores) == {"TPE01", "TPE02"}
    xinyi, nanjing = stores["TPE01"], stores["TPE02"]
    assert (xinyi.name, xinyi.redeemed, xinyi.redeemed_from_claims) == ("信義店", 1, 1)
    assert (xinyi.discount_minor, xinyi.revenue_minor) == (10000, 40000)
    assert xinyi.conversion == pytest.approx(1 / 5)
    assert (nanjing.redeemed, nanjing.redeemed_from_claims) == (2, 1)
    assert (nanjing.discount_minor, nanjing.revenue_minor) == (20000, 55000 + 10000)
    assert nanjing.conversion == pytest.approx(1 / 5)
    assert report.by_store[0].code == "TPE02"  # most redemptions first

    # Days in Taipei time: EARLY (17:30 UTC) and LATE fall on the same local day.
    local_day = (EARLY + timedelta(hours=8)).date()
    assert [(d.day, d.redeemed, d.discount_minor) for d in report.days] == [
        (local_day, 3, 30000)]

    # The recent list keeps the voided one, marked, newest first.
    assert len(report.recent) == 4
    assert {r.status for r in report.recent} == {RedemptionStatus.redeemed,
                                                 RedemptionStatus.voided}
    voided = next(r for r in report.recent if r.status == RedemptionStatus.voided)
    assert (voided.store_name, voided.void_reason, voided.staff_label) == (
        "信義店", "按錯了", "王小明")
    assert report.recent[0].redeemed_at >= report.recent[-1].redeemed_at

    # The counters kept by redemption agree with the rows.
    stored = session.get(Campaign, (shop.tenant.id, shop.campaign.id))
    assert stored is not None
    assert (stored.redeemed_count, stored.discount_minor) == (report.redeemed,
                                                               report.discount_minor)
    figures = list_figures(session, system_actor(shop.tenant.id), [shop.campaign.id])
    assert figures == {shop.campaign.id: ListFigures(claimed=5, redeemed=3)}


def test_store_manager_sees_redemptions_of_their_stores_only(
        session: Session, shop: Shop, activity: dict[str, Redemption]) -> None:
    manager = staff_actor(shop.tenant.id, "staff-1", "店長", Role.store_manager,
                          frozenset({shop.nanjing.id}))
    report = campaign_report(session, manager, shop.campaign.id)
    assert report.store_scoped
    # Claims belong to no store: the whole campaign's.
    assert (report.issued, report.claimed) == (10, 5)
    assert (report.redeemed, report.redeemed_from_claims, report.voided) == (2, 1, 0)
    assert report.discount_minor == 20000
    assert report.revenue_minor == 55000 + 10000
    assert [row.code for row in report.by_store] == ["TPE02"]
    assert {row.channel: row.redeemed for row in report.by_channel} == {"line": 0, "web": 1}
    assert {r.store_name for r in report.recent} == {"南京店"}
    assert list_figures(session, manager, [shop.campaign.id])[shop.campaign.id].redeemed == 2


def test_daily_rows_fill_gaps_in_the_brands_calendar(session: Session, shop: Shop) -> None:
    first = claim(session, shop, "0933-111-222", "line", EARLY - timedelta(days=3))
    second = claim(session, shop, "0933-111-333", "sms", EARLY - timedelta(days=3))
    use(session, shop, first.code or "", shop.xinyi, EARLY - timedelta(days=2), "d1")
    use(session, shop, second.code or "", shop.xinyi, EARLY, "d2")
    days = campaign_report(session, system_actor(shop.tenant.id), shop.campaign.id).days
    local = (EARLY + timedelta(hours=8)).date()
    assert [(d.day, d.redeemed) for d in days] == [
        (local - timedelta(days=2), 1), (local - timedelta(days=1), 0), (local, 1)]
    assert all(isinstance(d.day, date) for d in days)


def test_empty_campaign_reports_zeros_and_no_conversion(session: Session, shop: Shop) -> None:
    report = campaign_report(session, system_actor(shop.tenant.id), shop.campaign.id)
    assert (report.issued, report.claimed, report.redeemed, report.discount_minor,
            report.revenue_minor) == (0, 0, 0, 0, 0)
    assert report.conversion is None
    assert [len(report.by_channel), len(report.by_store), len(report.days),
            len(report.recent)] == [0, 0, 0, 0]


def test_other_brands_campaign_is_not_found_and_cashiers_are_refused(
        session: Session, shop: Shop) -> None:
    other = make_tenant(session)
    with pytest.raises(CampaignNotFound):
        campaign_report(session, system_actor(other.id), shop.campaign.id)
    cashier = staff_actor(shop.tenant.id, "staff-2", "收銀", Role.cashier,
                          frozenset({shop.xinyi.id}))
    with pytest.raises(Forbidden):
        campaign_report(session, cashier, shop.campaign.id)
    assert session.scalar(select(func.count()).select_from(Redemption)) == 0
