"""The campaign rules as pure functions: status by the clock, validity, schedule, discount.

Kept free of the database so validation, redemption, the claim page and the admin preview
all decide the same way, and so the arithmetic can be tested exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, TypeAlias

from sqlalchemy import ColumnElement

from omniloop.campaigns.errors import (
    CampaignEnded,
    CampaignNotActive,
    CampaignNotStarted,
    CouponExpired,
    CouponNotYetValid,
    FreeItemNotInBasket,
    LinesRequired,
    MinimumSpendNotMet,
    NoEligibleItems,
    OutsideHours,
)
from omniloop.campaigns.models import Campaign, CampaignKind, CampaignStatus
from omniloop.core.clock import as_utc, to_local
from omniloop.core.errors import N_
from omniloop.core.i18n import current_locale, gettext
from omniloop.core.money import format_money

if TYPE_CHECKING:
    from omniloop.campaigns.redemption import CampaignRow

WEEKDAY_NAMES = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
STATUS_LABELS: dict[CampaignStatus, str] = {
    CampaignStatus.draft: N_("Draft"),
    CampaignStatus.scheduled: N_("Scheduled"),
    CampaignStatus.active: N_("Running"),
    CampaignStatus.paused: N_("Paused"),
    CampaignStatus.ended: N_("Ended"),
}


# What the rules read of a campaign: the ORM object, or the POS's plain row of its columns
# (`redemption.CampaignRow`), which a till's check reads without the ORM.
Terms: TypeAlias = "Campaign | CampaignRow"


def current_status(campaign: Terms, now: datetime) -> CampaignStatus:
    """The status a person sees: a launched campaign is scheduled before its start and ended
    after its end, without a job having to flip it."""
    if campaign.status not in (CampaignStatus.scheduled, CampaignStatus.active):
        return campaign.status
    if now < as_utc(campaign.starts_at):
        return CampaignStatus.scheduled
    if campaign.ends_at is not None and now >= as_utc(campaign.ends_at):
        return CampaignStatus.ended
    return CampaignStatus.active


def status_filter(status: CampaignStatus, now: datetime) -> ColumnElement[bool]:
    """`current_status(campaign, now) == status` as SQL, so lists filter in the database."""
    launched = Campaign.status.in_([CampaignStatus.scheduled, CampaignStatus.active])
    if status == CampaignStatus.scheduled:
        return launched & (Campaign.starts_at > now)
    if status == CampaignStatus.active:
        return (launched & (Campaign.starts_at <= now)
                & (Campaign.ends_at.is_(None) | (Campaign.ends_at > now)))
    if status == CampaignStatus.ended:
        return (Campaign.status == CampaignStatus.ended) | (
            launched & (Campaign.starts_at <= now) & (Campaign.ends_at <= now))
    return Campaign.status == status


def local_text(value: datetime, timezone: str) -> str:
    """A timestamp as the brand's staff read it: local time, minutes, no zone noise."""
    return to_local(value, timezone).strftime("%Y-%m-%d %H:%M")


def require_running(campaign: Terms, now: datetime, timezone: str) -> None:
    status = current_status(campaign, now)
    if status == CampaignStatus.active:
        return
    if status == CampaignStatus.scheduled:
        raise CampaignNotStarted(date=local_text(campaign.starts_at, timezone))
    if status == CampaignStatus.ended and campaign.ends_at is not None:
        raise CampaignEnded(date=local_text(campaign.ends_at, timezone))
    raise CampaignNotActive(status=gettext(STATUS_LABELS[status]))


@dataclass(frozen=True)
class Validity:
    valid_from: datetime
    valid_until: datetime | None


def coupon_validity(campaign: Terms, claimed_at: datetime) -> Validity:
    """When a coupon claimed at `claimed_at` may be used.

    N days after claim wins over fixed dates; without either the campaign's window applies.
    Never later than the campaign's end: an ended campaign's coupons are dead.
    """
    if campaign.coupon_valid_days is not None:
        start = claimed_at
        until: datetime | None = claimed_at + timedelta(days=campaign.coupon_valid_days)
    else:
        start = as_utc(campaign.coupon_valid_from or campaign.starts_at)
        until = as_utc(campaign.coupon_valid_until) if campaign.coupon_valid_until else None
    if campaign.ends_at is not None:
        end = as_utc(campaign.ends_at)
        until = end if until is None else min(until, end)
    return Validity(valid_from=start, valid_until=until)


def require_valid(validity: Validity, now: datetime, timezone: str) -> None:
    if now < as_utc(validity.valid_from):
        raise CouponNotYetValid(date=local_text(validity.valid_from, timezone))
    if validity.valid_until is not None and now >= as_utc(validity.valid_until):
        raise CouponExpired(date=local_text(validity.valid_until, timezone))


def _parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def schedule_text(campaign: Terms) -> str:
    """"Mon, Tue 14:00–17:00": the allowed days and hours, for the refusal message."""
    parts = []
    if campaign.weekdays:
        parts.append(", ".join(gettext(WEEKDAY_NAMES[day]) for day in sorted(campaign.weekdays)))
    if campaign.hours_start and campaign.hours_end:
        parts.append(f"{campaign.hours_start}–{campaign.hours_end}")
    return " ".join(parts)


def require_schedule(campaign: Terms, now: datetime, timezone: str) -> None:
    """Weekdays and hours are the brand's local ones; an end before the start spans midnight
    (22:00–02:00)."""
    if not campaign.weekdays and not (campaign.hours_start and campaign.hours_end):
        return
    local = to_local(now, timezone)
    ok = True
    if campaign.hours_start and campaign.hours_end:
        start, end = _parse_hhmm(campaign.hours_start), _parse_hhmm(campaign.hours_end)
        moment = local.time()
        if start <= end:
            in_hours = start <= moment < end
            day = local.weekday()
        else:
            in_hours = moment >= start or moment < end
            # After midnight the night still belongs to the day it started on.
            day = local.weekday() if moment >= start else (local.weekday() - 1) % 7
        ok = in_hours
    else:
        day = local.weekday()
    if campaign.weekdays and day not in campaign.weekdays:
        ok = False
    if not ok:
        raise OutsideHours(schedule=schedule_text(campaign))


@dataclass(frozen=True)
class BasketLine:
    sku: str
    category: str | None
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


@dataclass(frozen=True)
class Basket:
    total_minor: int
    lines: tuple[BasketLine, ...] = ()


def eligible_amount(campaign: Terms, basket: Basket) -> int:
    """What the coupon applies to: the whole basket, or only its qualifying lines."""
    if not campaign.skus and not campaign.categories:
        return basket.total_minor
    if not basket.lines:
        raise LinesRequired()
    amount = sum(line.total_minor for line in basket.lines
                 if line.sku in campaign.skus or (line.category or "") in campaign.categories)
    if amount <= 0:
        raise NoEligibleItems()
    # Lines may carry list prices while the total is after other discounts.
    return min(amount, basket.total_minor)


def money(amount_minor: int, currency: str) -> str:
    return format_money(amount_minor, currency, current_locale.get())


def discount_for(campaign: Terms, basket: Basket, currency: str) -> int:
    """The discount in minor units, or the refusal that says why there is none.

    Percentages round half up to the currency's minor unit and stop at the cap; no discount
    exceeds what it applies to, so a basket never goes below zero.
    """
    if basket.total_minor < campaign.min_spend_minor:
        raise MinimumSpendNotMet(minimum=money(campaign.min_spend_minor, currency),
                                 total=money(basket.total_minor, currency))
    if campaign.kind == CampaignKind.free_item:
        sku = campaign.free_sku or ""
        if not basket.lines:
            raise LinesRequired()
        prices = [line.unit_price_minor for line in basket.lines
                  if line.sku == sku and line.quantity > 0]
        if not prices:
            raise FreeItemNotInBasket(sku=sku)
        return min(max(prices), basket.total_minor)
    if campaign.kind == CampaignKind.gift:
        return 0
    base = eligible_amount(campaign, basket)
    if campaign.kind == CampaignKind.percent_off:
        percent = campaign.percent_off or 0
        discount = (base * percent * 2 + 100) // 200  # round half up
        if campaign.max_discount_minor is not None:
            discount = min(discount, campaign.max_discount_minor)
        return min(discount, base)
    # amount_off and voucher: a fixed value, at most what it applies to.
    return min(campaign.value_minor or 0, base)


def describe_value(campaign: Terms, currency: str) -> str:
    """"NT$100 off", "15% off (up to NT$200)", "Free CF-LATTE": the offer in a few words."""
    if campaign.kind == CampaignKind.amount_off:
        return gettext("{amount} off").format(amount=money(campaign.value_minor or 0, currency))
    if campaign.kind == CampaignKind.percent_off:
        text = gettext("{percent}% off").format(percent=campaign.percent_off or 0)
        if campaign.max_discount_minor is not None:
            text += " " + gettext("(up to {amount})").format(
                amount=money(campaign.max_discount_minor, currency))
        return text
    if campaign.kind == CampaignKind.voucher:
        return gettext("{amount} voucher").format(amount=money(campaign.value_minor or 0,
                                                                 currency))
    if campaign.kind == CampaignKind.free_item:
        return gettext("Free {item}").format(item=campaign.free_sku or "")
    return gettext("Gift: {gift}").format(gift=campaign.gift_name or "")
