"""The pure rules: status by the clock, validity, weekdays and hours, discount arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from omniloop.campaigns.errors import (
    CampaignEnded,
    CampaignNotActive,
    CampaignNotStarted,
    CouponExpired,
    FreeItemNotInBasket,
    LinesRequired,
    MinimumSpendNotMet,
    NoEligibleItems,
    OutsideHours,
)
from omniloop.campaigns.models import Campaign, CampaignKind, CampaignStatus
from omniloop.campaigns.rules import (
    Basket,
    BasketLine,
    coupon_validity,
    current_status,
    discount_for,
    require_running,
    require_schedule,
    require_valid,
)

TZ = "Asia/Taipei"
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # Wednesday 14:00 in Taipei


def campaign(**fields: Any) -> Campaign:
    values: dict[str, Any] = {
        "tenant_id": "T", "name": "x", "kind": CampaignKind.amount_off, "value_minor": 10000,
        "status": CampaignStatus.active, "starts_at": NOW - timedelta(days=1), "ends_at": None,
        "min_spend_minor": 0, "skus": [], "categories": [], "weekdays": [],
        "hours_start": None, "hours_end": None, "coupon_valid_days": None,
        "coupon_valid_from": None, "coupon_valid_until": None, "max_discount_minor": None,
        "percent_off": None, "free_sku": None}
    values.update(fields)
    return Campaign(**values)


def test_status_follows_the_clock() -> None:
    assert current_status(campaign(), NOW) == CampaignStatus.active
    later = campaign(starts_at=NOW + timedelta(hours=1))
    assert current_status(later, NOW) == CampaignStatus.scheduled
    with pytest.raises(CampaignNotStarted, match="2026-11-25 15:00"):
        require_running(later, NOW, TZ)
    over = campaign(ends_at=NOW)
    assert current_status(over, NOW) == CampaignStatus.ended
    with pytest.raises(CampaignEnded):
        require_running(over, NOW, TZ)
    with pytest.raises(CampaignNotActive):
        require_running(campaign(status=CampaignStatus.paused), NOW, TZ)


def test_validity_days_after_claim_never_outlive_the_campaign() -> None:
    validity = coupon_validity(campaign(coupon_valid_days=30, ends_at=NOW + timedelta(days=10)),
                               NOW)
    assert validity.valid_from == NOW
    assert validity.valid_until == NOW + timedelta(days=10)
    fixed = coupon_validity(campaign(coupon_valid_until=NOW + timedelta(days=2)), NOW)
    assert fixed.valid_until == NOW + timedelta(days=2)
    with pytest.raises(CouponExpired, match="2026-11-27 14:00"):
        require_valid(fixed, NOW + timedelta(days=2), TZ)


@pytest.mark.parametrize(("weekdays", "hours", "local", "ok"), [
    ([2], None, (2026, 11, 25, 14, 0), True),          # Wednesday
    ([0, 1], None, (2026, 11, 25, 14, 0), False),
    ([], ("14:00", "17:00"), (2026, 11, 25, 14, 0), True),
    ([], ("14:00", "17:00"), (2026, 11, 25, 17, 0), False),  # the end is exclusive
    ([], ("22:00", "02:00"), (2026, 11, 26, 1, 30), True),   # spans midnight
    ([2], ("22:00", "02:00"), (2026, 11, 26, 1, 30), True),  # still Wednesday's night
    ([3], ("22:00", "02:00"), (2026, 11, 26, 1, 30), False),
])
def test_weekdays_and_hours_in_the_brand_time_zone(
        weekdays: list[int], hours: tuple[str, str] | None,
        local: tuple[int, int, int, int, int], ok: bool) -> None:
    from zoneinfo import ZoneInfo

    moment = datetime(*local, tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    rules = campaign(weekdays=weekdays, hours_start=hours[0] if hours else None,
                     hours_end=hours[1] if hours else None)
    if ok:
        require_schedule(rules, moment, TZ)
    else:
        with pytest.raises(OutsideHours):
            require_schedule(rules, moment, TZ)


def test_amount_off_never_exceeds_the_basket() -> None:
    assert discount_for(campaign(), Basket(total_minor=50000), "TWD") == 10000
    assert discount_for(campaign(), Basket(total_minor=6000), "TWD") == 6000
    with pytest.raises(MinimumSpendNotMet, match="500"):
        discount_for(campaign(min_spend_minor=50000), Basket(total_minor=49999), "TWD")


def test_percent_off_rounds_half_up_and_stops_at_the_cap() -> None:
    rules = campaign(kind=CampaignKind.percent_off, percent_off=15, value_minor=None)
    assert discount_for(rules, Basket(total_minor=12345), "TWD") == 1852  # 1851.75
    assert discount_for(rules, Basket(total_minor=10010), "TWD") == 1502  # 1501.5 → up
    capped = campaign(kind=CampaignKind.percent_off, percent_off=50, max_discount_minor=20000)
    assert discount_for(capped, Basket(total_minor=100000), "TWD") == 20000


def test_item_rules_apply_to_qualifying_lines_only() -> None:
    rules = campaign(kind=CampaignKind.percent_off, percent_off=50, categories=["咖啡"])
    lines = (BasketLine("CF-LATTE", "咖啡", 2, 13000), BasketLine("DS-CAKE", "甜點", 1, 8000))
    assert discount_for(rules, Basket(total_minor=34000, lines=lines), "TWD") == 13000
    with pytest.raises(LinesRequired):
        discount_for(rules, Basket(total_minor=34000), "TWD")
    with pytest.raises(NoEligibleItems):
        discount_for(rules, Basket(total_minor=8000, lines=lines[1:]), "TWD")


def test_free_item_is_worth_one_unit_of_it() -> None:
    rules = campaign(kind=CampaignKind.free_item, free_sku="BK-CROISSANT", value_minor=None)
    lines = (BasketLine("BK-CROISSANT", "烘焙", 2, 6500), BasketLine("CF-LATTE", "咖啡", 1, 13000))
    assert discount_for(rules, Basket(total_minor=26000, lines=lines), "TWD") == 6500
    with pytest.raises(FreeItemNotInBasket, match="BK-CROISSANT"):
        discount_for(rules, Basket(total_minor=13000, lines=lines[1:]), "TWD")


def test_a_gift_has_no_discount() -> None:
    rules = campaign(kind=CampaignKind.gift, gift_name="帆布袋", value_minor=None)
    assert discount_for(rules, Basket(total_minor=1000), "TWD") == 0
