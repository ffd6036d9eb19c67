"""HTTP API of loyalty: balances and history, adjustments, the program, and the POS side
(scan a member card, pay with points). Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import AwareDatetime, Field

from omniloop.api.deps import ApiActor, SessionDep, client_ip
from omniloop.campaigns.guessing import guarded_lookup
from omniloop.core.idempotency import require_key
from omniloop.core.schemas import RequestModel, ResponseModel, UtcDatetime
from omniloop.customers.profiles import get_customer
from omniloop.loyalty.jobs import run_daily
from omniloop.loyalty.ledger import (
    adjust_points,
    expire_due,
    expiring_soon,
    history,
    redeem_points,
)
from omniloop.loyalty.liability import liability_report
from omniloop.loyalty.member_card import Member, bind_pos_card, member_of, scan_member
from omniloop.loyalty.models import BlacklistEntry, EntryKind, NoShow, NoShowKind, PointsEntry
from omniloop.loyalty.program import get_program, update_program
from omniloop.loyalty.risk import (
    RiskFlag,
    blacklist,
    blacklist_of,
    cancel_no_show,
    lift_blacklist,
    mark_no_show,
    no_shows_of,
    risk_of,
)
from omniloop.loyalty.schemas import ProgramIn, ProgramOut
from omniloop.loyalty.tiers import tier_history
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
    expires_at: UtcDatetime | None
    unrecovered: int
    created_at: UtcDatetime

    @classmethod
    def of(cls, entry: PointsEntry) -> EntryOut:
        return cls.model_validate(entry)


class RiskOut(ResponseModel):
    level: str = Field(description="none, watch, high or blacklisted.")
    score: int = Field(description="0–100, from no-shows within the program's window.")
    no_shows: int
    blacklisted_until: UtcDatetime | None
    blacklist_reason: str | None

    @classmethod
    def of(cls, flag: RiskFlag) -> RiskOut:
        return cls(level=flag.level, score=flag.score, no_shows=flag.no_shows,
                   blacklisted_until=flag.blacklisted_until,
                   blacklist_reason=flag.blacklist_reason)


class MemberOut(ResponseModel):
    customer_id: str
    name: str | None
    phone: str | None = Field(description="Masked: enough to ask, not to copy.")
    balance: int
    balance_value_minor: int = Field(description="What the balance is worth as a discount.")
    tier_code: str | None
    tier_name: str | None
    risk: RiskOut = Field(description="Staff are warned about no-shows and the blacklist.")

    @classmethod
    def of(cls, member: Member) -> MemberOut:
        return cls(customer_id=member.customer.id, name=member.customer.name,
                   phone=member.phone, balance=member.balance,
                   balance_value_minor=member.balance * member.point_value_minor,
                   tier_code=member.tier_code, tier_name=member.tier_name,
                   risk=RiskOut.of(member.risk))


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


class BindCardIn(RequestModel):
    card_number: str = Field(min_length=1, max_length=64)


class BindCardOut(ResponseModel):
    customer_id: str
    card_number: str


@router.post("/pos/members/{customer_id}/pos-card", summary="Bind a POS card to a member",
             response_model=BindCardOut)
def bind_card(customer_id: str, body: BindCardIn, actor: ApiActor,
              session: SessionDep) -> BindCardOut:
    """Tie a POS card number to the member (found by scanning their member QR), so purchases
    on the card land on their profile. Binding the same card again changes nothing; a card
    of another customer answers 409 `pos_card_taken`."""
    identity = bind_pos_card(session, actor, customer_id, body.card_number)
    return BindCardOut(customer_id=identity.customer_id, card_number=identity.value)


# --- program, jobs, liability --------------------------------------------------------------


@router.get("/loyalty/program", summary="The loyalty program", response_model=ProgramOut)
def read_program(actor: ApiActor, session: SessionDep) -> ProgramOut:
    actor.require(Permission.campaigns_read)
    return ProgramOut.model_validate(get_program(session, actor.tenant_id))


@router.put("/loyalty/program", summary="Change the loyalty program", response_model=ProgramOut)
def change_program(body: ProgramIn, actor: ApiActor, session: SessionDep) -> ProgramOut:
    """Replace every setting (audited). New rates apply from now on; points already earned
    keep their amount and expiry. Tiers: codes and thresholds unique, the first at 0."""
    return ProgramOut.model_validate(update_program(session, actor, body))


class DailyOut(ResponseModel):
    expired_lots: int
    tiers_evaluated: int
    tiers_upgraded: int
    tiers_downgraded: int
    birthday_coupons: int
    birthday_refusals: list[str] = Field(description="Error codes of coupons the birthday "
                                                     "campaign refused (ended, quota, ...).")


@router.post("/loyalty/jobs/daily", summary="Run the daily loyalty job now",
             response_model=DailyOut)
def daily(actor: ApiActor, session: SessionDep) -> DailyOut:
    """What `omniloop loyalty daily` runs: expire due points, re-evaluate tiers on rolling
    12-month spend, give birthday coupons. Safe to run again."""
    run = run_daily(session, actor)
    return DailyOut(expired_lots=run.expired_lots, tiers_evaluated=run.tiers.evaluated,
                    tiers_upgraded=run.tiers.upgraded, tiers_downgraded=run.tiers.downgraded,
                    birthday_coupons=run.birthdays.issued,
                    birthday_refusals=[code for _, code in run.birthdays.refused])


class LiabilityMonthOut(ResponseModel):
    month: str | None = Field(description="YYYY-MM in the brand's time zone; null: never.")
    points: int
    value_minor: int
    lots: int


class LiabilityOut(ResponseModel):
    points: int
    value_minor: int
    currency: str
    members_with_points: int
    unrecovered_points: int
    months: list[LiabilityMonthOut]


@router.get("/loyalty/liability", summary="Outstanding points by expiry month",
            response_model=LiabilityOut)
def liability(actor: ApiActor, session: SessionDep) -> LiabilityOut:
    """Points customers hold and their value as discounts, by the month they expire."""
    report = liability_report(session, actor)
    return LiabilityOut(points=report.points, value_minor=report.value_minor,
                        currency=report.currency, members_with_points=report.members_with_points,
                        unrecovered_points=report.unrecovered_points,
                        months=[LiabilityMonthOut(month=m.month, points=m.points,
                                                  value_minor=m.value_minor, lots=m.lots)
                                for m in report.months])


class ExpiringOut(ResponseModel):
    customer_id: str
    points: int = Field(description="Points that expire within the window.")
    first_expiry: UtcDatetime


@router.get("/loyalty/expiring", summary="Who has points expiring soon",
            response_model=list[ExpiringOut])
def expiring(actor: ApiActor, session: SessionDep,
             within_days: int = Query(default=30, ge=1, le=366)) -> list[ExpiringOut]:
    """Customers with points expiring within `within_days` (30 by default), the points and
    the first expiry: the list reminders ("your points expire on …") are sent to."""
    actor.require(Permission.campaigns_read)
    return [ExpiringOut(customer_id=customer, points=points, first_expiry=first)
            for customer, points, first in expiring_soon(session, actor.tenant_id,
                                                         within_days=within_days)]


class TierChangeOut(ResponseModel):
    from_tier: str | None
    to_tier: str
    spend_minor: int
    actor_label: str
    created_at: UtcDatetime


@router.get("/customers/{customer_id}/tiers", summary="Tier history",
            response_model=list[TierChangeOut])
def tiers(customer_id: str, actor: ApiActor, session: SessionDep) -> list[TierChangeOut]:
    customer = get_customer(session, actor, customer_id)
    return [TierChangeOut.model_validate(c)
            for c in tier_history(session, actor.tenant_id, customer.id)]


# --- no-shows, risk, blacklist -------------------------------------------------------------


class NoShowIn(RequestModel):
    kind: NoShowKind
    reference: str = Field(min_length=1, max_length=64,
                           description="The booking or pickup order's id.")
    due_at: AwareDatetime = Field(description="When the customer should have come.")
    store_id: str | None = Field(default=None, max_length=26)
    note: str = Field(default="", max_length=255)


class NoShowOut(ResponseModel):
    id: str
    customer_id: str
    kind: NoShowKind
    reference: str
    store_id: str | None
    due_at: UtcDatetime
    note: str
    penalty_points: int
    actor_label: str
    created_at: UtcDatetime
    cancelled_at: UtcDatetime | None

    @classmethod
    def of(cls, no_show: NoShow) -> NoShowOut:
        return cls.model_validate(no_show)


@router.post("/customers/{customer_id}/no-shows", summary="Mark a no-show",
             response_model=NoShowOut, status_code=status.HTTP_201_CREATED)
def no_show(customer_id: str, body: NoShowIn, response: Response, actor: ApiActor,
            session: SessionDep) -> NoShowOut:
    """A booking or reserved pickup the customer did not come for. Once per reference (a
    retry answers 200 with the first record); the program's penalty points are taken (never
    below zero) and, if the program says so, the customer is blacklisted."""
    recorded, created = mark_no_show(session, actor, customer_id, kind=body.kind,
                                     reference=body.reference, due_at=body.due_at,
                                     store_id=body.store_id, note=body.note)
    if not created:
        response.status_code = status.HTTP_200_OK
    return NoShowOut.of(recorded)


@router.post("/no-shows/{no_show_id}/cancel", summary="Cancel a no-show marked by mistake",
             response_model=NoShowOut)
def cancel(no_show_id: str, actor: ApiActor, session: SessionDep) -> NoShowOut:
    """Gives back the penalty points it took. Cancelling again changes nothing."""
    return NoShowOut.of(cancel_no_show(session, actor, no_show_id))


class BlacklistIn(RequestModel):
    reason: str = Field(min_length=1, max_length=255)
    ends_at: AwareDatetime = Field(description="Required: a blacklist always ends.")


class BlacklistOut(ResponseModel):
    id: str
    customer_id: str
    reason: str
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    actor_label: str
    lifted_at: UtcDatetime | None
    lifted_by: str | None

    @classmethod
    def of(cls, entry: BlacklistEntry) -> BlacklistOut:
        return cls.model_validate(entry)


@router.post("/customers/{customer_id}/blacklist", summary="Blacklist a customer",
             response_model=BlacklistOut, status_code=status.HTTP_201_CREATED)
def add_blacklist(customer_id: str, body: BlacklistIn, actor: ApiActor,
                  session: SessionDep) -> BlacklistOut:
    return BlacklistOut.of(blacklist(session, actor, customer_id, reason=body.reason,
                                     ends_at=body.ends_at))


@router.post("/blacklist/{entry_id}/lift", summary="Lift a blacklist entry early",
             response_model=BlacklistOut)
def lift(entry_id: str, actor: ApiActor, session: SessionDep) -> BlacklistOut:
    return BlacklistOut.of(lift_blacklist(session, actor, entry_id))


class CustomerRiskOut(RiskOut):
    no_show_history: list[NoShowOut]
    blacklist_history: list[BlacklistOut]


@router.get("/customers/{customer_id}/risk", summary="Risk, no-shows and blacklist",
            response_model=CustomerRiskOut)
def risk(customer_id: str, actor: ApiActor, session: SessionDep) -> CustomerRiskOut:
    customer = get_customer(session, actor, customer_id)
    flag = risk_of(session, actor.tenant_id, customer.id)
    return CustomerRiskOut(
        **RiskOut.of(flag).model_dump(),
        no_show_history=[NoShowOut.of(n) for n in no_shows_of(session, actor.tenant_id,
                                                                customer.id)],
        blacklist_history=[BlacklistOut.of(b) for b in blacklist_of(session, actor.tenant_id,
                                                                      customer.id)])
