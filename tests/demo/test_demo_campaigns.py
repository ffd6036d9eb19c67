"""The demo campaigns: every state, claims and redemptions that obey the campaign rules,
counters that match the rows, and the same content on every load."""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

import pytest
from sqlalchemy import func, select, text

from omniloop.campaigns.models import (
    AudienceGroup,
    Campaign,
    CampaignParticipant,
    CampaignStatus,
    CodeBatch,
    Coupon,
    CouponStatus,
    Redemption,
    RedemptionStatus,
)
from omniloop.campaigns.rules import current_status
from omniloop.core import security
from omniloop.core.clock import as_utc, to_local, utcnow
from omniloop.core.db import Database, Session
from omniloop.customers.models import CustomerIdentity, IdentityKind
from omniloop.demo import campaigns as demo_campaigns
from omniloop.demo import data, load_demo
from omniloop.demo import loops as demo_loops
from omniloop.demo import loyalty as demo_loyalty
from omniloop.demo.history import HISTORY_END
from omniloop.models import Base
from omniloop.orders.models import Order
from omniloop.tenancy import staff
from omniloop.tenancy.models import Store

CUSTOMERS = 40  # the smallest demo the demo tests load
TIMEZONE = "Asia/Taipei"

_hash_once = cache(security.hash_password)


@pytest.fixture(autouse=True)
def _hash_demo_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staff, "hash_password", _hash_once)


def _load(session: Session) -> None:
    load_demo(session, customers=CUSTOMERS)
    session.commit()
    session.expire_all()


def _by_name(session: Session) -> dict[str, Campaign]:
    return {c.name: c for c in session.scalars(select(Campaign))}


def test_demo_campaigns(session: Session) -> None:
    """One load, checked three ways (each load costs seconds)."""
    _load(session)
    _check_states(session)
    _check_claims_and_redemptions(session)
    _check_counters(session)


def _check_states(session: Session) -> None:
    campaigns = _by_name(session)
    # The campaigns' eight, the loyalty birthday coupon and the loop's referral welcome offer.
    assert set(campaigns) == {*demo_campaigns.NAMES, demo_loyalty.BIRTHDAY, demo_loops.WELCOME}
    now = utcnow()
    status = {name: current_status(c, now) for name, c in campaigns.items()}
    assert status[demo_campaigns.SPRING] == CampaignStatus.ended
    assert status[demo_campaigns.CROISSANT] == CampaignStatus.paused
    assert status[demo_campaigns.BEANS] == CampaignStatus.scheduled
    assert status[demo_campaigns.CHRISTMAS] == CampaignStatus.draft
    for name in (demo_campaigns.WELCOME, demo_campaigns.AFTERNOON):  # open-ended
        assert status[name] == CampaignStatus.active, name
    assert len(set(status.values())) >= 5

    welcome = campaigns[demo_campaigns.WELCOME]
    assert (welcome.new_customers_only, welcome.coupon_valid_days) == (True, 30)
    assert set(welcome.claim_channels) == {"line", "web", "qr"}
    afternoon = campaigns[demo_campaigns.AFTERNOON]
    assert (afternoon.hours_start, afternoon.hours_end, afternoon.categories) == (
        "14:00", "17:00", ["咖啡"])
    assert afternoon.max_discount_minor is not None
    spring = campaigns[demo_campaigns.SPRING]
    assert (spring.shared_code, spring.quota, spring.min_spend_minor) == (
        "SPRING100", 300, 100000)
    assert campaigns[demo_campaigns.WINBACK].holdout_share_bp == 1000


def _check_claims_and_redemptions(session: Session) -> None:
    """Claims and redemptions obey the windows, hours and rules, at a realistic rate."""
    campaigns = _by_name(session)
    names = {c.id: name for name, c in campaigns.items()}
    stores = {s.id: s.code for s in session.scalars(select(Store))}
    claimed = list(session.scalars(select(Coupon).where(Coupon.claimed_at.is_not(None))))
    redemptions = list(session.scalars(select(Redemption)))
    standing = [r for r in redemptions if r.status == RedemptionStatus.redeemed]
    assert claimed
    assert standing
    assert len({r.store_id for r in standing}) >= 2
    assert any(r.status == RedemptionStatus.voided for r in redemptions)
    assert any(r.order_id is not None for r in standing)
    assert {c.claim_channel for c in claimed} >= {"line", "web"}
    assert all(c.attribution and c.attribution.get("utm_source") for c in claimed)

    end_of_history = as_utc(max(session.scalars(select(Order.paid_at))))
    assert end_of_history.date() <= HISTORY_END
    for coupon in claimed:
        campaign = campaigns[names[coupon.campaign_id]]
        assert coupon.claimed_at is not None
        assert as_utc(campaign.starts_at) <= as_utc(coupon.claimed_at)
        assert to_local(coupon.claimed_at, TIMEZONE).date() <= HISTORY_END
    hours = {s.code: s.opening_hours for s in data.STORES}
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    for redemption in redemptions:
        local = to_local(redemption.redeemed_at, TIMEZONE)
        assert local.date() <= HISTORY_END
        span = hours[stores[redemption.store_id]][days[local.weekday()]]
        assert span, (redemption.store_id, local)
        assert span[0]["open"] <= local.strftime("%H:%M") < span[0]["close"]
        if names[redemption.campaign_id] == demo_campaigns.AFTERNOON:
            assert local.weekday() < 5
            assert 14 <= local.hour < 17

    # O2O conversion of claimed coupons, as a coffee chain would see it.
    redeemed_claims = sum(1 for c in claimed if c.status == CouponStatus.redeemed)
    assert 0.2 <= redeemed_claims / len(claimed) <= 0.6

    batches = list(session.scalars(select(CodeBatch)))
    assert sum(b.created_count for b in batches) >= 2000
    assert all(b.campaign_id == campaigns[demo_campaigns.ANNIVERSARY].id for b in batches)
    groups = Counter(p.audience_group for p in session.scalars(select(CampaignParticipant).where(
        CampaignParticipant.campaign_id == campaigns[demo_campaigns.WINBACK].id)))
    assert groups[AudienceGroup.target] > groups[AudienceGroup.holdout] > 0


def _check_counters(session: Session) -> None:
    """The counters that enforce quota and budget agree with the rows behind them."""
    for campaign in session.scalars(select(Campaign)):
        claimed = session.scalar(select(func.count()).select_from(Coupon).where(
            Coupon.campaign_id == campaign.id, Coupon.claimed_at.is_not(None)))
        redeemed = session.scalar(select(func.count()).select_from(Redemption).where(
            Redemption.campaign_id == campaign.id,
            Redemption.status == RedemptionStatus.redeemed))
        discount = session.scalar(select(func.coalesce(func.sum(Redemption.discount_minor), 0))
                                  .where(Redemption.campaign_id == campaign.id,
                                         Redemption.status == RedemptionStatus.redeemed))
        coupons_redeemed = session.scalar(select(func.count()).select_from(Coupon).where(
            Coupon.campaign_id == campaign.id, Coupon.status == CouponStatus.redeemed))
        with_coupon = session.scalar(select(func.count()).select_from(Redemption).where(
            Redemption.campaign_id == campaign.id, Redemption.coupon_id.is_not(None),
            Redemption.status == RedemptionStatus.redeemed))
        assert (campaign.claimed_count, campaign.redeemed_count, campaign.discount_minor) == (
            claimed, redeemed, discount), campaign.name
        assert coupons_redeemed == with_coupon, campaign.name


def _summary(session: Session) -> dict[str, Any]:
    """The demo campaigns without ids, codes and tokens (random by design)."""
    session.expire_all()
    names = {c.id: c.name for c in session.scalars(select(Campaign))}
    stores = {s.id: s.code for s in session.scalars(select(Store))}
    phones = {i.customer_id: i.value for i in session.scalars(select(CustomerIdentity).where(
        CustomerIdentity.kind == IdentityKind.phone))}
    now = utcnow()
    return {
        "campaigns": sorted((c.name, c.kind.value, current_status(c, now).value,
                             c.claimed_count, c.redeemed_count, c.discount_minor)
                            for c in session.scalars(select(Campaign))),
        "claims": sorted((names[c.campaign_id], phones.get(c.customer_id or ""),
                          c.claim_channel, str(c.claimed_at and as_utc(c.claimed_at)),
                          repr(sorted((c.attribution or {}).items())), c.status.value)
                         for c in session.scalars(select(Coupon).where(
                             Coupon.claimed_at.is_not(None)))),
        "redemptions": sorted((names[r.campaign_id], stores[r.store_id],
                               as_utc(r.redeemed_at).isoformat(), r.basket_total_minor,
                               r.discount_minor, r.status.value, r.order_id is not None)
                              for r in session.scalars(select(Redemption))),
        "audience": sorted(Counter(
            (names[p.campaign_id], str(p.audience_group), phones.get(p.customer_id))
            for p in session.scalars(select(CampaignParticipant))).items()),
        "codes": sorted((names[b.campaign_id], b.pattern or "", b.created_count)
                        for b in session.scalars(select(CodeBatch))),
    }


def _empty(database: Database) -> None:
    with database.engine.begin() as connection:
        if database.engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())


def test_demo_campaigns_are_the_same_on_every_load(session: Session,
                                                   database: Database) -> None:
    _load(session)
    first = _summary(session)
    assert first["claims"]
    assert first["redemptions"]

    again = load_demo(session, customers=CUSTOMERS)  # on the same database: adds nothing
    session.commit()
    assert "campaigns" not in again.created
    assert _summary(session) == first

    session.rollback()
    _empty(database)
    _load(session)  # on an empty one: the same again
    assert _summary(session) == first
