"""Tiers: who is Member, Silver or Gold, from what they spent over the last 12 months.

The evaluation job (`evaluate_tiers`, run daily by `omniloop loyalty daily` or the API) sums
each customer's net spend — orders paid in the rolling 12 months before `now`, less what was
refunded — and moves them to the highest tier whose threshold that spend reaches, up or
down, writing a `tier_changes` row for every move. Orders keep the profile they arrived on,
so spend on profiles merged into a survivor counts for the survivor.

A tier's benefits are its earn multiplier (`program.tier_multiplier_bp`) and, if it names
one, a campaign whose coupon its members receive once in their birthday month
(`issue_birthday_coupons`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from omniloop.campaigns.claims import issue_coupon
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.errors import OmniloopError
from omniloop.customers.models import Customer
from omniloop.customers.profiles import survivor_ids
from omniloop.loyalty.ledger import add_months
from omniloop.loyalty.models import BirthdayReward, LoyaltyProgram, PointsAccount, TierChange
from omniloop.loyalty.program import get_program
from omniloop.orders.models import Order
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.tenants import get_tenant

SPEND_WINDOW_MONTHS = 12


def tiers_by_threshold(program: LoyaltyProgram) -> list[dict[str, Any]]:
    return sorted(program.tiers or [], key=lambda t: int(t.get("threshold_minor", 0)))


def tier_for_spend(program: LoyaltyProgram, spend_minor: int) -> str | None:
    """The highest tier whose threshold `spend_minor` reaches (None: the program has none)."""
    reached = [t for t in tiers_by_threshold(program)
               if spend_minor >= int(t.get("threshold_minor", 0))]
    return str(reached[-1]["code"]) if reached else None


def tier_name(program: LoyaltyProgram, code: str | None) -> str | None:
    for tier in program.tiers or []:
        if tier.get("code") == code:
            return str(tier.get("name") or code)
    return None


def rolling_spend(session: Session, tenant_id: str, now: datetime,
                  customer_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Net spend per live profile over the 12 months before `now` (merged profiles' orders
    counted for their survivor)."""
    query = (select(Order.customer_id, func.sum(Order.total_minor - Order.refunded_minor))
             .where(Order.tenant_id == tenant_id, Order.customer_id.is_not(None),
                    Order.paid_at > add_months(now, -SPEND_WINDOW_MONTHS),
                    Order.paid_at <= now)
             .group_by(Order.customer_id))
    if customer_ids is not None:
        query = query.where(Order.customer_id.in_(list(customer_ids)))
    by_profile = {str(cid): int(total or 0) for cid, total in session.execute(query)}
    merged = set(session.scalars(select(Customer.id).where(
        Customer.tenant_id == tenant_id, Customer.merged_into_id.is_not(None),
        Customer.id.in_(list(by_profile))))) if by_profile else set()
    moved = survivor_ids(session, tenant_id, merged) if merged else {}
    spend: dict[str, int] = defaultdict(int)
    for profile, total in by_profile.items():
        spend[moved.get(profile, profile)] += total
    return dict(spend)


@dataclass(frozen=True)
class TierEvaluation:
    evaluated: int
    upgraded: int
    downgraded: int


def evaluate_tiers(session: Session, actor: Actor, *, now: datetime | None = None
                   ) -> TierEvaluation:
    """Move every live customer with an account or recent spend to the tier their rolling
    12-month spend earns. Running it twice in a row changes nothing the second time."""
    actor.require(Permission.customers_merge)
    now = now or utcnow()
    program = get_program(session, actor.tenant_id)
    rank = {str(t["code"]): i for i, t in enumerate(tiers_by_threshold(program))}
    spend = rolling_spend(session, actor.tenant_id, now)
    accounts = dict(session.execute(
        select(PointsAccount.customer_id, PointsAccount.tier_code)
        .join(Customer, (Customer.tenant_id == PointsAccount.tenant_id)
              & (Customer.id == PointsAccount.customer_id))
        .where(PointsAccount.tenant_id == actor.tenant_id, Customer.merged_into_id.is_(None),
               Customer.erased_at.is_(None))).all())
    live_spenders = set(session.scalars(select(Customer.id).where(
        Customer.tenant_id == actor.tenant_id, Customer.id.in_(list(spend)),
        Customer.merged_into_id.is_(None), Customer.erased_at.is_(None)))) if spend else set()
    upgraded = downgraded = 0
    for customer_id in sorted(set(accounts) | live_spenders):
        current = accounts.get(customer_id)
        target = tier_for_spend(program, spend.get(customer_id, 0))
        if target is None or target == current:
            continue
        _move(session, actor, customer_id, current, target, spend.get(customer_id, 0), now,
              has_account=customer_id in accounts)
        if current is None or rank.get(target, 0) > rank.get(current, -1):
            upgraded += 1
        else:
            downgraded += 1
    return TierEvaluation(evaluated=len(set(accounts) | live_spenders), upgraded=upgraded,
                          downgraded=downgraded)


def _move(session: Session, actor: Actor, customer_id: str, current: str | None, target: str,
          spend_minor: int, now: datetime, *, has_account: bool) -> None:
    values = {"tier_code": target, "tier_since": now, "updated_at": now}
    if has_account:
        session.execute(update(PointsAccount).where(
            PointsAccount.tenant_id == actor.tenant_id,
            PointsAccount.customer_id == customer_id).values(**values)
            .execution_options(synchronize_session=False))
    else:
        session.execute(insert(PointsAccount).values(
            tenant_id=actor.tenant_id, customer_id=customer_id, balance=0, lifetime_earned=0,
            **values))
    session.add(TierChange(tenant_id=actor.tenant_id, customer_id=customer_id,
                           from_tier=current, to_tier=target, spend_minor=spend_minor,
                           actor_label=actor.label, created_at=now))
    session.flush()


def tier_history(session: Session, tenant_id: str, customer_id: str,
                 limit: int = 50) -> list[TierChange]:
    return list(session.scalars(
        select(TierChange).where(TierChange.tenant_id == tenant_id,
                                 TierChange.customer_id == customer_id)
        .order_by(TierChange.created_at.desc(), TierChange.id.desc()).limit(limit)))


@dataclass(frozen=True)
class BirthdayRun:
    issued: int
    refused: list[tuple[str, str]]  # (customer, error code): campaign ended, quota, ...


def issue_birthday_coupons(session: Session, actor: Actor, *, now: datetime | None = None
                           ) -> BirthdayRun:
    """Give members whose birthday month it is (in the brand's time zone) their tier's
    birthday coupon, once per year. A refusal by the campaign's own rules (ended, quota
    spent) is reported and retried on the next run, not swallowed."""
    actor.require(Permission.customers_merge)
    now = now or utcnow()
    local = now.astimezone(ZoneInfo(get_tenant(session, actor.tenant_id).timezone))
    program = get_program(session, actor.tenant_id)
    campaign_of = {str(t["code"]): t.get("birthday_campaign_id") for t in program.tiers or []
                   if t.get("birthday_campaign_id")}
    if not campaign_of:
        return BirthdayRun(0, [])
    rewarded = select(BirthdayReward.customer_id).where(
        BirthdayReward.tenant_id == actor.tenant_id, BirthdayReward.year == local.year)
    candidates = session.execute(
        select(Customer, PointsAccount.tier_code)
        .join(PointsAccount, (PointsAccount.tenant_id == Customer.tenant_id)
              & (PointsAccount.customer_id == Customer.id))
        .where(Customer.tenant_id == actor.tenant_id, Customer.merged_into_id.is_(None),
               Customer.erased_at.is_(None), Customer.birthday.is_not(None),
               PointsAccount.tier_code.in_(list(campaign_of)),
               Customer.id.not_in(rewarded))
        .order_by(Customer.id)).all()
    issued, refused = 0, []
    for customer, tier_code in candidates:
        if customer.birthday is None or customer.birthday.month != local.month:
            continue
        campaign_id = str(campaign_of[str(tier_code)])
        try:
            with session.begin_nested():
                claim = issue_coupon(session, actor, campaign_id, customer, channel="birthday",
                                     now=now)
                session.add(BirthdayReward(tenant_id=actor.tenant_id, customer_id=customer.id,
                                           year=local.year, campaign_id=campaign_id,
                                           coupon_id=claim.coupon.id))
                session.flush()
        except IntegrityError:
            continue  # another run rewarded them at the same moment
        except OmniloopError as refusal:
            refused.append((customer.id, refusal.code))
            continue
        issued += 1
    return BirthdayRun(issued, refused)
