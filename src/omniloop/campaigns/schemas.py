"""Request and response bodies of campaigns, claims and the POS.

Amounts are integer minor units of the brand's currency (TWD: NT$100 → 10000). Rules that
tie several fields together (a percent campaign needs a percentage, …) are checked in the
service, so the admin forms and the API refuse the same things the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints

from omniloop.campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    CodeMode,
    Coupon,
    CouponStatus,
    Redemption,
    RedemptionStatus,
    Stacking,
)
from omniloop.core.schemas import PatchModel, RequestModel, ResponseModel, UtcDatetime
from omniloop.customers.schemas import IdentityIn
from omniloop.orders.schemas import OrderLineIn

MAX_MINOR = 10_000_000_000  # NT$100,000,000: beyond any coupon
Minor = Annotated[int, Field(ge=0, le=MAX_MINOR, strict=True)]
HourMinute = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
Code = Annotated[str, StringConstraints(min_length=3, max_length=40,
                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=16,
                                               pattern=r"^[a-z][a-z0-9_]*$")]
Short = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CampaignFields(RequestModel):
    """Everything about a campaign that an operator sets."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=120)] = Field(
        examples=["秋季拿鐵折 NT$30"])
    description: str = Field(default="", max_length=4000,
                             description="Shown on the claim page and in the wallet.")
    terms: str = Field(default="", max_length=8000, description="Fine print, shown in full.")
    kind: CampaignKind
    starts_at: datetime = Field(description="When claims and redemptions may begin.")
    ends_at: datetime | None = Field(default=None, description="Left out: open-ended.")
    value_minor: Minor | None = Field(default=None,
                                      description="amount_off / voucher: the value.")
    percent_off: int | None = Field(default=None, ge=1, le=100, strict=True,
                                    description="percent_off: 15 means 15% off.")
    max_discount_minor: Minor | None = Field(default=None,
                                             description="percent_off: the cap.")
    free_sku: Short | None = Field(default=None, description="free_item: the SKU given free.")
    gift_name: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    voucher_price_minor: Minor | None = Field(
        default=None, description="voucher: what the buyer paid online (for reporting).")
    coupon_valid_days: int | None = Field(
        default=None, ge=1, le=3650, strict=True,
        description="A coupon is valid this many days after its claim.")
    coupon_valid_from: datetime | None = None
    coupon_valid_until: datetime | None = None
    min_spend_minor: Minor = 0
    store_ids: list[Short] = Field(default_factory=list, max_length=500,
                                   description="Stores where it can be used; empty: all.")
    skus: list[Short] = Field(default_factory=list, max_length=500,
                              description="Only these SKUs count (with `categories`).")
    categories: list[Annotated[str, StringConstraints(min_length=1, max_length=80)]] = Field(
        default_factory=list, max_length=200)
    weekdays: list[Annotated[int, Field(ge=0, le=6, strict=True)]] = Field(
        default_factory=list, max_length=7, description="0 = Monday … 6 = Sunday; empty: all.")
    hours_start: HourMinute | None = Field(default=None, description="Local time, HH:MM.")
    hours_end: HourMinute | None = None
    claim_channels: list[ChannelName] = Field(
        default_factory=list, max_length=20,
        description="Channels a claim may come through (line, web, email, sms, qr, ...); "
                    "empty: any.")
    new_customers_only: bool = False
    per_customer_limit: int = Field(default=1, ge=1, le=1000, strict=True)
    quota: int | None = Field(default=None, ge=1, le=100_000_000, strict=True,
                              description="Most coupons claimed and redeemed in all.")
    budget_minor: Minor | None = Field(default=None,
                                       description="Most discount given in all.")
    stacking: Stacking = Stacking.exclusive
    holdout_share_bp: int = Field(
        default=0, ge=0, le=5000, strict=True,
        description="Share of an assigned audience held back to measure lift, in basis "
                    "points: 1000 = 10%.")
    code_mode: CodeMode = CodeMode.unique
    shared_code: Code | None = Field(default=None,
                                     description="code_mode shared: the one code, e.g. "
                                                 "SPRING100.")
    code_pattern: Annotated[str, StringConstraints(min_length=4, max_length=64)] = Field(
        default="####-####", description="For codes made at claim: `#` is a random character.")


class CampaignCreate(CampaignFields):
    pass


class CampaignUpdate(PatchModel):
    """Only the fields sent change; `null` clears the optional ones listed in `nullable`."""

    nullable: ClassVar[frozenset[str]] = frozenset({
        "ends_at", "value_minor", "percent_off", "max_discount_minor", "free_sku", "gift_name",
        "voucher_price_minor", "coupon_valid_days", "coupon_valid_from", "coupon_valid_until",
        "hours_start", "hours_end", "quota", "budget_minor", "shared_code"})

    name: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    description: str | None = Field(default=None, max_length=4000)
    terms: str | None = Field(default=None, max_length=8000)
    kind: CampaignKind | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    value_minor: Minor | None = None
    percent_off: int | None = Field(default=None, ge=1, le=100, strict=True)
    max_discount_minor: Minor | None = None
    free_sku: Short | None = None
    gift_name: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    voucher_price_minor: Minor | None = None
    coupon_valid_days: int | None = Field(default=None, ge=1, le=3650, strict=True)
    coupon_valid_from: datetime | None = None
    coupon_valid_until: datetime | None = None
    min_spend_minor: Minor | None = None
    store_ids: list[Short] | None = Field(default=None, max_length=500)
    skus: list[Short] | None = Field(default=None, max_length=500)
    categories: list[Annotated[str, StringConstraints(min_length=1, max_length=80)]] | None = (
        Field(default=None, max_length=200))
    weekdays: list[Annotated[int, Field(ge=0, le=6, strict=True)]] | None = Field(
        default=None, max_length=7)
    hours_start: HourMinute | None = None
    hours_end: HourMinute | None = None
    claim_channels: list[ChannelName] | None = Field(default=None, max_length=20)
    new_customers_only: bool | None = None
    per_customer_limit: int | None = Field(default=None, ge=1, le=1000, strict=True)
    quota: int | None = Field(default=None, ge=1, le=100_000_000, strict=True)
    budget_minor: Minor | None = None
    stacking: Stacking | None = None
    holdout_share_bp: int | None = Field(default=None, ge=0, le=5000, strict=True)
    code_mode: CodeMode | None = None
    shared_code: Code | None = None
    code_pattern: Annotated[str, StringConstraints(min_length=4, max_length=64)] | None = None


class CampaignOut(ResponseModel):
    id: str
    name: str
    description: str
    terms: str
    kind: CampaignKind
    status: CampaignStatus = Field(description="As of now: a launched campaign reads "
                                               "`scheduled` before its start, `ended` after.")
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None
    value_minor: int | None
    percent_off: int | None
    max_discount_minor: int | None
    free_sku: str | None
    gift_name: str | None
    voucher_price_minor: int | None
    coupon_valid_days: int | None
    coupon_valid_from: UtcDatetime | None
    coupon_valid_until: UtcDatetime | None
    min_spend_minor: int
    store_ids: list[str]
    skus: list[str]
    categories: list[str]
    weekdays: list[int]
    hours_start: str | None
    hours_end: str | None
    claim_channels: list[str]
    new_customers_only: bool
    per_customer_limit: int
    quota: int | None
    budget_minor: int | None
    stacking: Stacking
    holdout_share_bp: int
    code_mode: CodeMode
    shared_code: str | None
    code_pattern: str
    claimed_count: int
    redeemed_count: int
    discount_minor: int
    currency: str
    created_at: UtcDatetime
    launched_at: UtcDatetime | None

    @classmethod
    def of(cls, campaign: Campaign, status: CampaignStatus, currency: str) -> CampaignOut:
        values: dict[str, Any] = {name: getattr(campaign, name) for name in cls.model_fields
                                  if name not in ("status", "currency")}
        return cls(**values, status=status, currency=currency)


class CouponOut(ResponseModel):
    id: str
    campaign_id: str
    code: str | None
    customer_id: str | None
    status: CouponStatus
    claim_channel: str | None
    claimed_at: UtcDatetime | None
    valid_from: UtcDatetime | None
    valid_until: UtcDatetime | None
    redeemed_at: UtcDatetime | None
    redemption_id: str | None
    qr_token: str | None = Field(default=None, description="Signed token for the QR code.")


class Attribution(RequestModel):
    """Where a claim came from, as the link carried it."""

    utm_source: Short | None = None
    utm_medium: Short | None = None
    utm_campaign: Short | None = None
    utm_content: Short | None = None
    utm_term: Short | None = None
    touchpoint: Short | None = None
    referrer: Annotated[str, StringConstraints(max_length=255)] | None = None


class ClaimIn(RequestModel):
    identities: list[IdentityIn] = Field(min_length=1, max_length=10,
                                         description="Who claims (phone, LINE id, ...).")
    channel: ChannelName = Field(default="web", description="line, web, email, sms, qr, ...")
    attribution: Attribution | None = None


class ClaimOut(ResponseModel):
    coupon: CouponOut
    customer_id: str
    created: bool = Field(description="False when this claim repeats one already made "
                                      "(the wallet already holds the coupon).")
    wallet_url: str


class BasketLineIn(RequestModel):
    sku: Short
    category: Annotated[str, StringConstraints(max_length=80)] | None = None
    quantity: int = Field(gt=0, le=100_000, strict=True)
    unit_price_minor: int = Field(ge=0, le=2_000_000_000, strict=True)


class PosCheckIn(RequestModel):
    code: Annotated[str, StringConstraints(min_length=1, max_length=400)] = Field(
        description="A coupon code as typed, or the token read from its QR code.",
        examples=["CAFE-7KQ2-M9XD"])
    store_code: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        examples=["TPE01"])
    basket_total_minor: Minor = Field(description="What the basket costs before this coupon.")
    lines: list[BasketLineIn] = Field(default_factory=list, max_length=500,
                                      description="Needed for item-specific coupons.")
    basket_id: Short | None = Field(
        default=None, description="The POS's transaction id: coupons in one basket are "
                                  "checked against each other's stacking rules.")
    customer_id: Short | None = Field(default=None,
                                      description="The member at the counter, if known.")


class RedeemIn(PosCheckIn):
    staff: Annotated[str, StringConstraints(min_length=1, max_length=160)] | None = Field(
        default=None, description="Who served (name or staff e-mail). Staff signed in to "
                                  "/pos are recorded themselves.")
    order_external_id: Short | None = Field(
        default=None, description="Link the redemption to this order (already sent to "
                                  "/orders, or sent in `order`).")
    order_lines: list[OrderLineIn] = Field(
        default_factory=list, max_length=500,
        description="Record the purchase too: the order gets these lines, the coupon's "
                    "discount and `order_external_id` as its id.")
    paid_at: datetime | None = None


class ReasonOut(ResponseModel):
    code: str
    message: str


class CampaignBrief(ResponseModel):
    id: str
    name: str
    kind: CampaignKind
    offer: str = Field(description="The offer in a few words, in the request's language.")
    stacking: Stacking


class ValidationOut(ResponseModel):
    valid: bool
    discount_minor: int
    currency: str
    campaign: CampaignBrief | None
    coupon_id: str | None
    code: str | None
    customer_id: str | None
    valid_until: UtcDatetime | None
    reason: ReasonOut | None = Field(description="Why it cannot be used, when it cannot.")


class RedemptionOut(ResponseModel):
    id: str
    campaign_id: str
    coupon_id: str | None
    code: str | None
    store_id: str
    customer_id: str | None
    staff_label: str
    basket_id: str | None
    basket_total_minor: int
    discount_minor: int
    order_id: str | None
    status: RedemptionStatus
    redeemed_at: UtcDatetime
    voided_at: UtcDatetime | None
    void_reason: str | None

    @classmethod
    def of(cls, redemption: Redemption) -> RedemptionOut:
        return cls.model_validate(redemption)


class VoidIn(RequestModel):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        examples=["Customer changed their mind"])


def coupon_out(coupon: Coupon, token: str | None = None) -> CouponOut:
    out = CouponOut.model_validate(coupon)
    out.qr_token = token
    return out
