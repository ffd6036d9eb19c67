"""HTTP API of loyalty: balances and history, adjustments, the program, and the POS side
(scan a member card, pay with points). Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import Field

from omniloop.api.deps import ApiActor, SessionDep, client_ip
from omniloop.campaigns.guessing import guarded_lookup
from omniloop.core.clock import as_utc
from omniloop.core.idempotency import require_key
from omniloop.core.schemas import RequestModel, ResponseModel
from omniloop.customers.profiles import get_customer
from omniloop.loyalty.ledger import (
    adjust_points,
    expire_due,
    expiring_soon,
    history,
    redeem_points,
)
from omniloop.loyalty.member_card import Member, member_of, scan_member
from omniloop.loyalty.models import EntryKind, PointsEntry
from omniloop.tenancy.access import Permission

router = APIRouter(tags=["loyalty"])

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", description="Unique per change (1–100 characters); a retry with "
                                         "the same key returns the first result.")]


class EntryOut(ResponseModel):
    id: str
    kind: EntryKind
    points: int
    balance_after: int
    reason: str
    order_id: str | None
    refund_id: str | None
    reference: str | None
    actor_label: str
    remaining: int
    expires_at: datetime | None
    unrecovered: int
    created_at: datetime

    @classmethod
    def of(cls, entry: PointsEntry) -> EntryOut:
        out = cls.model_validate(entry)
        out.created_at = as_utc(out.created_at)
        out.expires_at = as_utc(out.expires_at) if out.expires_at else None
        return out


class MemberOut(ResponseModel):
    customer_id: str
    name: str | None
    phone: str | None = Field(description="Masked: enough to ask, not to copy.")
    balance: int
    balance_value_minor: int = Field(description="What the balance is worth as a discount.")
    tier_code: str | None
    tier_name: str | None

    @classmethod
    def of(cls, member: Member) -> MemberOut:
        return cls(customer_id=member.customer.id, name=member.customer.name,
                   phone=member.phone, balance=member.balance,
                   balance_value_minor=member.balance * member.point_value_minor,
                   tier_code=member.tier_code, tier_name=member.tier_name)


class PointsOut(MemberOut):
    expiring_within_30_days: int
    entries: list[EntryOut]


@router.get("/customers/{customer_id}/points", summary="Points balance and history",
            response_model=PointsOut)
def points(customer_id: str, actor: ApiActor, session: SessionDep,
           limit: int = Query(default=100, ge=1, le=1000)) -> PointsOut:
    """The running balance (O(1)), the tier, points expiring within 30 days, and the latest
    ledger entries, newest first."""
    member = member_of(session, actor, customer_id)
    soon = sum(points for _, points, _ in expiring_soon(session, actor.tenant_id,
                                                        customer_id=member.customer.id))
    return PointsOut(**MemberOut.of(member).model_dump(), expiring_within_30_days=soon,
                     entries=[EntryOut.of(e) for e in history(
                         session, actor.tenant_id, member.customer.id, limit)])


class AdjustIn(RequestModel):
    points: int = Field(description="Positive adds, negative takes away; never 0.",
                        ge=-100_000_000, le=100_000_000, strict=True)
    reason: str = Field(min_length=1, max_length=255, examples=["Goodwill: late delivery"])


@router.post("/customers/{customer_id}/points/adjustments", summary="Adjust points",
             response_model=EntryOut, status_code=status.HTTP_201_CREATED)
def adjust(customer_id: str, body: AdjustIn, actor: ApiActor, session: SessionDep,
           idempotency_key: IdempotencyKey = None) -> EntryOut:
    """A manual correction with a required reason, audited. Taking away more than the
    balance answers 409 `insufficient_points`."""
    actor.require(Permission.customers_merge)  # owners and marketers, not the counter
    customer = get_customer(session, actor, customer_id)
    return EntryOut.of(adjust_points(session, actor, customer.id, body.points, body.reason,
                                     key=f"adjust:{require_key(idempotency_key)}"))


class ScanIn(RequestModel):
    token: str = Field(min_length=1, max_length=400,
                       description="What the scanner read from the member card QR.")


@router.post("/pos/members/scan", summary="Scan a member card", response_model=MemberOut)
def scan(body: ScanIn, request: Request, actor: ApiActor, session: SessionDep) -> MemberOut:
    """The member a card belongs to, with balance and tier. Cards rotate every few minutes:
    an old screenshot answers 400 `token_expired`, an altered one `token_invalid`."""
    with guarded_lookup(actor, client_ip(request)):
        return MemberOut.of(scan_member(session, actor, body.token))


class PayWithPointsIn(RequestModel):
    customer_id: str = Field(min_length=1, max_length=26)
    points: int = Field(description="Points to spend.", strict=True)
    order_total_minor: int = Field(ge=0, strict=True,
                                   description="The basket, before points: the share rule "
                                               "applies to it.")
    reference: str | None = Field(default=None, max_length=64,
                                  description="The POS's transaction id.")


class PayWithPointsOut(ResponseModel):
    entry: EntryOut
    discount_minor: int


@router.post("/pos/points/redeem", summary="Pay with points", response_model=PayWithPointsOut,
             status_code=status.HTTP_201_CREATED)
def pay_with_points(body: PayWithPointsIn, response: Response, actor: ApiActor,
                    session: SessionDep, idempotency_key: IdempotencyKey = None
                    ) -> PayWithPointsOut:
    """Spend points as a discount, exactly once per Idempotency-Key. Refusals: 422
    `points_invalid`, 409 `insufficient_points`, `below_minimum_redemption`,
    `redeem_share_exceeded`."""
    customer = get_customer(session, actor, body.customer_id)
    result = redeem_points(session, actor, customer.id, body.points,
                           order_total_minor=body.order_total_minor,
                           key=f"pos-points:{require_key(idempotency_key)}",
                           reference=body.reference)
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    return PayWithPointsOut(entry=EntryOut.of(result.entry),
                            discount_minor=result.discount_minor)


class ExpiryOut(ResponseModel):
    expired_lots: int


@router.post("/loyalty/expire", summary="Expire due points now", response_model=ExpiryOut)
def expire(actor: ApiActor, session: SessionDep) -> ExpiryOut:
    """What the scheduled job does: expire every lot whose time has come, oldest first.
    Safe to run again."""
    actor.require(Permission.customers_merge)
    return ExpiryOut(expired_lots=expire_due(session, actor))
