"""Request and response shapes of the loyalty API, shared with the admin pages' forms."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from omniloop.core.schemas import RequestModel, ResponseModel
from omniloop.loyalty.models import Rounding

TierCode = Annotated[str, StringConstraints(min_length=1, max_length=32,
                                            pattern=r"^[a-z][a-z0-9_-]*$")]


class TierIn(RequestModel):
    code: TierCode = Field(examples=["gold"])
    name: Annotated[str, StringConstraints(min_length=1, max_length=60,
                                           strip_whitespace=True)]
    threshold_minor: int = Field(ge=0, le=10**12, strict=True,
                                 description="Rolling 12-month spend that reaches the tier.")
    multiplier_bp: int = Field(ge=0, le=100_000, strict=True,
                               description="Earn multiplier in basis points: 12500 = 1.25×.")
    birthday_campaign_id: str | None = Field(
        default=None, max_length=26,
        description="A campaign whose coupon the tier's members get in their birthday month.")


class ProgramIn(RequestModel):
    enabled: bool = True
    earn_unit_minor: int = Field(gt=0, le=10**9, strict=True,
                                 description="Spend per earning unit: 10000 = NT$100.")
    earn_points: int = Field(ge=0, le=10_000, strict=True,
                             description="Points per earning unit.")
    rounding: Rounding
    point_value_minor: int = Field(gt=0, le=10**6, strict=True,
                                   description="What one point takes off: 100 = NT$1.")
    max_redeem_share_bp: int = Field(ge=0, le=10000, strict=True,
                                     description="Most of an order points may pay: 5000 = 50%.")
    min_redeem_points: int = Field(ge=1, le=1_000_000, strict=True)
    expiry_months: int = Field(ge=0, le=120, strict=True,
                               description="Months a lot lives after the purchase; 0: never.")
    tiers: list[TierIn] = Field(min_length=1, max_length=10)
    no_show_penalty_points: int = Field(ge=0, le=1_000_000, strict=True)
    risk_window_days: int = Field(ge=1, le=3650, strict=True)
    high_risk_no_shows: int = Field(ge=1, le=100, strict=True)
    auto_blacklist_no_shows: int = Field(ge=0, le=100, strict=True,
                                         description="0: never blacklist automatically.")
    auto_blacklist_days: int = Field(ge=1, le=1830, strict=True)


class ProgramOut(ResponseModel):
    enabled: bool
    earn_unit_minor: int
    earn_points: int
    rounding: Rounding
    point_value_minor: int
    max_redeem_share_bp: int
    min_redeem_points: int
    expiry_months: int
    tiers: list[TierIn]
    no_show_penalty_points: int
    risk_window_days: int
    high_risk_no_shows: int
    auto_blacklist_no_shows: int
    auto_blacklist_days: int
