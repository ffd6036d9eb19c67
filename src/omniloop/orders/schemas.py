"""Request and response bodies of the orders module.

Amounts are integer minor units of the brand's currency (TWD: NT$120 → 12000). The server
computes every total from the lines; totals a client sends are only checked against it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from omniloop.core.schemas import RequestModel, ResponseModel, UtcDatetime
from omniloop.customers.schemas import IdentityIn, Traits
from omniloop.orders.models import Order, OrderChannel, OrderStatus, Refund

# A unit price above NT$20,000,000 is a typo, not a sale (the catalogue has the same cap).
MAX_UNIT_PRICE_MINOR = 2_000_000_000
MAX_QUANTITY = 100_000
MAX_LINES = 500
# Orders: (lines × quantity × price) stays far inside 64-bit integers.
MAX_ORDER_DISCOUNT_MINOR = MAX_LINES * MAX_QUANTITY * MAX_UNIT_PRICE_MINOR

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Minor = Annotated[int, Field(ge=0, strict=True)]


class OrderLineIn(RequestModel):
    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The product code as the POS or shop knows it. It need not be in the "
                    "catalogue.", examples=["CF-LATTE"])
    name: Annotated[str, StringConstraints(min_length=1, max_length=160)] | None = Field(
        default=None, description="Left out: the catalogue's name for the SKU, else the SKU.",
        examples=["拿鐵"])
    category: Annotated[str, StringConstraints(max_length=80)] | None = Field(
        default=None, description="Left out: the catalogue's category for the SKU, else none.",
        examples=["咖啡"])
    quantity: int = Field(gt=0, le=MAX_QUANTITY, strict=True, examples=[2])
    unit_price_minor: int = Field(ge=0, le=MAX_UNIT_PRICE_MINOR, strict=True,
                                  examples=[13000])
    discount_minor: Minor = Field(default=0, description="Discount on this line.")
    total_minor: Minor | None = Field(
        default=None, description="Optional check: quantity × unit price − discount.")


class OrderIn(RequestModel):
    external_id: ExternalId = Field(
        description="The order's id in the sending system; posting it again is a retry.",
        examples=["POS-TPE01-20261125-0042"])
    source: Annotated[str, StringConstraints(min_length=1, max_length=32,
                                             pattern=r"^[a-z0-9][a-z0-9_.-]*$")] = Field(
        default="api", description="The sending system: pos, shopline, 91app, ...",
        examples=["pos"])
    channel: OrderChannel | None = Field(
        default=None, description="`store` or `online`; left out: `store` when a store is "
                                  "given, else `online`.")
    store_id: Annotated[str, StringConstraints(min_length=1, max_length=26)] | None = None
    store_code: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    customer_id: Annotated[str, StringConstraints(min_length=1, max_length=26)] | None = Field(
        default=None, description="A known customer. Or send `identities` instead; neither "
                                  "means an anonymous purchase.")
    identities: list[IdentityIn] = Field(
        default_factory=list, max_length=20,
        description="Who bought (phone, member card, e-mail, ...): the customer is found, "
                    "created or merged as by /customers/identify.")
    traits: Traits | None = Field(default=None,
                                  description="Set on the customer found by `identities`.")
    lines: list[OrderLineIn] = Field(min_length=1, max_length=MAX_LINES)
    discount_minor: int = Field(default=0, ge=0, le=MAX_ORDER_DISCOUNT_MINOR, strict=True,
                                description="Order-level discount, on top of line discounts.")
    total_minor: Minor | None = Field(
        default=None, description="Optional check: what the customer paid. The server "
                                  "computes the total and refuses the order if they differ.")
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)] | None = Field(
        default=None, description="Optional check: must be the brand's currency.")
    paid_at: datetime = Field(description="When it was paid. Without a UTC offset it is read "
                                          "in the brand's time zone.")


class RefundLineIn(RequestModel):
    line_id: str | None = Field(default=None, max_length=26)
    position: int | None = Field(default=None, ge=1, strict=True,
                                 description="The line's position in the order (1, 2, ...).")
    quantity: int = Field(gt=0, le=MAX_QUANTITY, strict=True)


class RefundIn(RequestModel):
    external_id: ExternalId = Field(
        description="The refund's id in the sending system; posting it again is a retry.",
        examples=["RF-20261126-0007"])
    amount_minor: int | None = Field(default=None, gt=0, strict=True,
                                     description="Refund this amount, with no goods returned.")
    lines: list[RefundLineIn] | None = Field(
        default=None, min_length=1, max_length=MAX_LINES,
        description="Refund these quantities of these lines; the amount follows from each "
                    "line's price after its share of the discounts.")
    reason: str = Field(default="", max_length=255)
    refunded_at: datetime | None = Field(default=None,
                                         description="When it happened; left out: now.")


class OrderLineOut(ResponseModel):
    id: str
    position: int
    sku: str
    name: str
    category: str
    quantity: int
    unit_price_minor: int
    discount_minor: int
    total_minor: int
    net_minor: int = Field(description="The line's total less its share of the order "
                                       "discount: what it is refunded at.")
    refunded_quantity: int


class RefundLineOut(ResponseModel):
    line_id: str
    position: int
    quantity: int
    amount_minor: int


class RefundOut(ResponseModel):
    id: str
    order_id: str
    external_id: str
    amount_minor: int
    currency: str
    reason: str
    lines: list[RefundLineOut]
    refunded_at: UtcDatetime
    created_at: UtcDatetime

    @classmethod
    def of(cls, refund: Refund) -> RefundOut:
        return cls(id=refund.id, order_id=refund.order_id, external_id=refund.external_id,
                   amount_minor=refund.amount_minor, currency=refund.currency,
                   reason=refund.reason,
                   lines=[RefundLineOut.model_validate(line) for line in refund.lines],
                   refunded_at=refund.refunded_at, created_at=refund.created_at)


class OrderOut(ResponseModel):
    id: str
    external_id: str
    source: str
    channel: OrderChannel
    store_id: str | None
    customer_id: str | None
    currency: str
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    refunded_minor: int
    status: OrderStatus
    paid_at: UtcDatetime
    created_at: UtcDatetime
    lines: list[OrderLineOut]
    refunds: list[RefundOut]

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(id=order.id, external_id=order.external_id, source=order.source,
                   channel=order.channel, store_id=order.store_id, customer_id=order.customer_id,
                   currency=order.currency, subtotal_minor=order.subtotal_minor,
                   discount_minor=order.discount_minor, total_minor=order.total_minor,
                   refunded_minor=order.refunded_minor, status=order.status,
                   paid_at=order.paid_at, created_at=order.created_at,
                   lines=[OrderLineOut.model_validate(line) for line in order.lines],
                   refunds=[RefundOut.of(r) for r in order.refunds])
