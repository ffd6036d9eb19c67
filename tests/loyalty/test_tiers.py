"""Tiers from rolling 12-month spend, birthday coupons, points through merges, liability."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from omniloop.campaigns.models import Coupon
from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Database, Session
from omniloop.customers.identify import identify, undo_merge
from omniloop.customers.models import Customer
from omniloop.customers.schemas import IdentityIn
from omniloop.loyalty.jobs import run_daily
from omniloop.loyalty.ledger import add_months, balance_of, redeem_points
from omniloop.loyalty.liability import liability_report
from omniloop.loyalty.models import PointsAccount, PointsEntry, TierChange
from omniloop.loyalty.program import stored_program
from omniloop.loyalty.tiers import evaluate_tiers, issue_birthday_coupons, rolling_spend
from omniloop.orders.models import Order
from omniloop.orders.refunds import refund
from omniloop.orders.schemas import OrderIn, RefundIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.campaigns.factories import make_campaign
from tests.loyalty.test_ledger import assert_consistent
from tests.tenancy.factories import fresh, make_tenant

NOW = utcnow().replace(microsecond=0)


@pytest.fixture
def tenant(session: Session) -> Tenant:
    tenant = make_tenant(session)
    fresh(session)
    stored_program(session, tenant.id).earn_unit_minor = 100  # 1 point per NT$1
    session.commit()
    return tenant


def buy(session: Session, tenant: Tenant, external_id: str, total_minor: int, *,
        identity: tuple[str, str] = ("phone", "0912-345-678"), days_ago: float = 1) -> Order:
    fresh(session)
    placed, _ = ingest_order(session, system_actor(tenant.id), OrderIn.model_validate({
        "external_id": external_id, "identities": [{"kind": identity[0], "value": identity[1]}],
        "lines": [{"sku": "CF-BEANS", "quantity": 1, "unit_price_minor": total_minor}],
        "paid_at": (NOW - timedelta(days=days_ago)).isoformat()}))
    session.commit()
    return placed


def tier_of(session: Session, tenant: Tenant, customer_id: str) -> str | None:
    fresh(session)
    return session.scalar(select(PointsAccount.tier_code).where(
        PointsAccount.tenant_id == tenant.id, PointsAccount.customer_id == customer_id))


def test_tiers_follow_rolling_12_month_spend_up_and_down(session: Session,
                                                         tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    # Silver from NT$5,000, Gold from NT$15,000 (the defaults).
    ann = buy(session, tenant, "A-1", 600000, identity=("phone", "0911-111-111"))
    bob = buy(session, tenant, "B-1", 1000000, identity=("phone", "0922-222-222"))
    buy(session, tenant, "B-2", 600000, identity=("phone", "0922-222-222"), days_ago=30)
    old = buy(session, tenant, "C-old", 2000000, identity=("phone", "0933-333-333"),
              days_ago=400)  # outside the window: counts for nothing
    cid = old.customer_id
    assert ann.customer_id
    assert bob.customer_id
    assert cid
    assert rolling_spend(session, tenant.id, NOW) == {ann.customer_id: 600000,
                                                      bob.customer_id: 1600000}

    result = evaluate_tiers(session, actor, now=NOW)
    session.commit()
    assert (result.upgraded, result.downgraded) == (3, 0)
    assert tier_of(session, tenant, ann.customer_id) == "silver"
    assert tier_of(session, tenant, bob.customer_id) == "gold"
    assert tier_of(session, tenant, cid) == "member"

    again = evaluate_tiers(session, actor, now=NOW)
    session.commit()
    assert (again.upgraded, again.downgraded) == (0, 0)

    # Bob returns NT$2,000 of the first order: NT$14,000 is Silver.
    fresh(session)
    refund(session, actor, bob.id, RefundIn.model_validate(
        {"external_id": "R-1", "amount_minor": 200000}))
    session.commit()
    down = evaluate_tiers(session, actor, now=NOW)
    session.commit()
    assert (down.upgraded, down.downgraded) == (0, 1)
    assert tier_of(session, tenant, bob.customer_id) == "silver"
    # A year on, nothing is inside the window any more.
    later = evaluate_tiers(session, actor, now=add_months(NOW, 13))
    session.commit()
    assert later.downgraded == 2
    history = list(session.scalars(select(TierChange).where(
        TierChange.tenant_id == tenant.id, TierChange.customer_id == bob.customer_id)
        .order_by(TierChange.created_at, TierChange.id)))
    assert [(h.from_tier, h.to_tier, h.spend_minor) for h in history] == [
        (None, "gold", 1600000), ("gold", "silver", 1400000), ("silver", "member", 0)]


def test_the_tier_multiplier_applies_to_later_earning(session: Session, tenant: Tenant) -> None:
    first = buy(session, tenant, "G-1", 1600000)
    assert first.customer_id
    evaluate_tiers(session, system_actor(tenant.id), now=NOW)
    session.commit()
    buy(session, tenant, "G-2", 10000)  # NT$100 at Gold's 1.5× → 150 points
    assert assert_consistent(session, tenant, first.customer_id) == 16000 + 150


def test_birthday_coupons_come_once_a_year_in_the_birthday_month(session: Session,
                                                                  tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    campaign = make_campaign(session, tenant, name="生日禮")
    fresh(session)
    program = stored_program(session, tenant.id)
    program.tiers = [{**t, "birthday_campaign_id": campaign.id if t["code"] == "gold" else None}
                     for t in program.tiers]
    session.commit()
    local = NOW.astimezone(ZoneInfo("Asia/Taipei"))
    other_month = local.month % 12 + 1
    gold = buy(session, tenant, "BD-1", 1600000, identity=("phone", "0911-000-001"))
    gold_later = buy(session, tenant, "BD-2", 1600000, identity=("phone", "0911-000-002"))
    silver = buy(session, tenant, "BD-3", 600000, identity=("phone", "0911-000-003"))
    fresh(session)
    for placed, month in ((gold, local.month), (gold_later, other_month),
                          (silver, local.month)):
        assert placed.customer_id
        customer = session.get_one(Customer, (tenant.id, placed.customer_id))
        customer.birthday = date(1990, month, 1)
    session.commit()
    evaluate_tiers(session, actor, now=NOW)
    first = issue_birthday_coupons(session, actor, now=NOW)
    session.commit()
    assert (first.issued, first.refused) == (1, [])
    second = issue_birthday_coupons(session, actor, now=NOW)
    session.commit()
    assert second.issued == 0
    fresh(session)
    held = session.scalars(select(Coupon.customer_id).where(
        Coupon.tenant_id == tenant.id, Coupon.campaign_id == campaign.id)).all()
    assert held == [gold.customer_id]


def test_points_follow_a_merge_and_go_back_when_it_is_undone(session: Session,
                                                            tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    phone = buy(session, tenant, "P-1", 30000, identity=("phone", "0955-555-555"))
    mail = buy(session, tenant, "E-1", 20000, identity=("email", "mei@example.com"),
               days_ago=2)
    assert phone.customer_id
    assert mail.customer_id
    fresh(session)
    result = identify(session, actor, [IdentityIn(kind="phone", value="0955-555-555"),
                                       IdentityIn(kind="email", value="mei@example.com")])
    session.commit()
    survivor, merged = result.customer.id, result.merged[0]
    assert (survivor, merged) == (phone.customer_id, mail.customer_id)  # the older survives
    assert assert_consistent(session, tenant, survivor) == 500
    assert assert_consistent(session, tenant, merged) == 0
    # The moved lots keep their expiry.
    fresh(session)
    expiries = sorted(as_utc(e) for e in session.scalars(select(PointsEntry.expires_at).where(
        PointsEntry.tenant_id == tenant.id, PointsEntry.customer_id == survivor,
        PointsEntry.lot_open.is_(True))) if e is not None)
    assert expiries == sorted(add_months(NOW - timedelta(days=d), 12) for d in (1, 2))

    fresh(session)
    redeem_points(session, actor, survivor, 100, order_total_minor=100000, key="spend")
    session.commit()
    fresh(session)
    merge_id = session.scalars(select(PointsEntry.idempotency_key).where(
        PointsEntry.tenant_id == tenant.id,
        PointsEntry.idempotency_key.like("merge:%:out"))).one().split(":")[1]
    undo_merge(session, actor, merge_id)
    session.commit()
    # Both back where they were, less the 100 spent while merged — taken from the lot that
    # expires first, the e-mail profile's (earned a day earlier).
    assert assert_consistent(session, tenant, merged) == 100
    assert assert_consistent(session, tenant, survivor) == 300


def test_the_liability_report_adds_up_the_open_lots(session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    buy(session, tenant, "L-1", 30000, days_ago=5)
    buy(session, tenant, "L-2", 20000, identity=("phone", "0966-666-666"), days_ago=40)
    buy(session, tenant, "L-3", 12345, identity=("phone", "0977-777-777"), days_ago=400)
    run_daily(session, actor, now=NOW)  # L-3's points expired a month ago
    session.commit()
    report = liability_report(session, actor)
    fresh(session)
    lots = session.execute(select(PointsEntry.expires_at, PointsEntry.remaining).where(
        PointsEntry.tenant_id == tenant.id, PointsEntry.lot_open.is_(True))).all()
    by_month: dict[str, int] = defaultdict(int)
    for expires_at, remaining in lots:
        assert expires_at is not None
        by_month[as_utc(expires_at).astimezone(ZoneInfo("Asia/Taipei")).strftime("%Y-%m")] += \
            remaining
    assert report.points == 500 == sum(by_month.values())
    assert report.value_minor == 500 * 100
    assert {m.month: m.points for m in report.months} == dict(by_month)
    assert report.members_with_points == 2
    total = sum(balance_of(session, tenant.id, c) for c in session.scalars(
        select(PointsAccount.customer_id).where(PointsAccount.tenant_id == tenant.id)))
    assert total == report.points


def test_the_daily_command_runs_for_every_brand(database: Database, session: Session,
                                                tenant: Tenant) -> None:
    from typer.testing import CliRunner

    from omniloop.cli import app
    from omniloop.core.db import set_database

    buy(session, tenant, "D-1", 600000)
    buy(session, tenant, "D-old", 1000, identity=("phone", "0988-888-888"), days_ago=400)
    try:
        runner = CliRunner()
        result = runner.invoke(app, ["--database-url", database.url, "loyalty", "daily"])
        assert result.exit_code == 0, result.output
        assert f"{tenant.slug}: expired 1 lots; tiers: 2 up, 0 down of 2" in result.output
        again = runner.invoke(app, ["--database-url", database.url, "loyalty", "daily",
                                    "--tenant", tenant.slug])
        assert f"{tenant.slug}: expired 0 lots; tiers: 0 up, 0 down of 2" in again.output
        unknown = runner.invoke(app, ["--database-url", database.url, "loyalty", "daily",
                                      "--tenant", "nobody"])
        assert unknown.exit_code == 2
        assert "error: tenant_not_found" in unknown.output
    finally:
        set_database(database)


def test_the_hourly_worker_runs_each_brand_at_its_own_night(session: Session,
                                                            tenant: Tenant) -> None:
    """Brands in Taipei and in London: when it is 03:xx in one, it is not in the other."""
    from omniloop.loyalty.jobs import DAILY_HOUR, run_daily_where_due

    def when_local(zone: str, hour: int) -> datetime:
        """The moment in the day after NOW when `zone` reads hour:15."""
        start = NOW.replace(minute=15, second=0) + timedelta(hours=1)
        return next(start + timedelta(hours=h) for h in range(24)
                    if (start + timedelta(hours=h)).astimezone(ZoneInfo(zone)).hour == hour)

    london = make_tenant(session, slug="london")
    fresh(session)
    london.timezone = "Europe/London"
    session.commit()
    buy(session, tenant, "W-1", 600000)
    assert run_daily_where_due(now=when_local("Asia/Taipei", DAILY_HOUR)) == [tenant.slug]
    fresh(session)
    assert session.scalar(select(TierChange.to_tier).where(
        TierChange.tenant_id == tenant.id)) == "silver"
    assert run_daily_where_due(now=when_local("Europe/London", DAILY_HOUR)) == ["london"]
    assert run_daily_where_due(now=when_local("Asia/Taipei", DAILY_HOUR + 6)) == []


def test_the_worker_schedules_the_loyalty_job_hourly(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from omniloop.core.settings import get_settings
    from omniloop.messaging import worker

    monkeypatch.setenv("OMNILOOP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OMNILOOP_REDIS_URL", raising=False)
    get_settings.cache_clear()
    worker.reset()
    try:
        periodic = {task.name: task for task in worker.get_huey()._registry.periodic_tasks}
        assert "loyalty.daily" in periodic
        hourly = periodic["loyalty.daily"]
        at = [datetime(2026, 11, 25, hour, minute) for hour in (3, 4) for minute in (0, 15)]
        assert [hourly.validate_datetime(moment) for moment in at] == [False, True, False, True]
    finally:
        worker.reset()
        get_settings.cache_clear()
def test_a_refund_after_a_merge_takes_the_points_back_where_they_went(
        session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    phone = buy(session, tenant, "MR-1", 30000, identity=("phone", "0955-000-001"))
    mail = buy(session, tenant, "MR-2", 20000, identity=("email", "lin@example.com"))
    fresh(session)
    identify(session, actor, [IdentityIn(kind="phone", value="0955-000-001"),
                              IdentityIn(kind="email", value="lin@example.com")])
    session.commit()
    survivor = phone.customer_id
    assert survivor is not None
    fresh(session)
    refund(session, actor, mail.id, RefundIn.model_validate({"external_id": "MR-R",
                                                            "amount_minor": 20000}))
    session.commit()
    assert assert_consistent(session, tenant, survivor) == 300
    fresh(session)
    reversal = session.scalars(select(PointsEntry).where(
        PointsEntry.tenant_id == tenant.id, PointsEntry.kind == "reversal")).one()
    assert (reversal.customer_id, reversal.points, reversal.unrecovered) == (survivor, -200, 0)
    assert liability_report(session, actor).unrecovered_points == 0
