"""Demo loyalty: the café's program, members in every tier, points paid at the counter,
points expired, birthday coupons, a few no-shows and a blacklisted customer.

Orders of the history earned their points as they were loaded (the orders module's
listeners); this adds what happens on the counter and in the daily job, "as of" the day after
the history ends, through the same services the API and the job use. Members are picked in
phone order with a seeded generator, so two loads pick the same people.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from omniloop.campaigns.models import Campaign, CampaignKind
from omniloop.campaigns.schemas import CampaignCreate
from omniloop.campaigns.service import create_campaign, launch_campaign
from omniloop.core.db import Session
from omniloop.customers.models import CustomerIdentity, IdentityKind
from omniloop.demo.history import HISTORY_END
from omniloop.loyalty.jobs import run_daily
from omniloop.loyalty.ledger import adjust_points, redeem_points
from omniloop.loyalty.models import LoyaltyProgram, NoShowKind, PointsAccount
from omniloop.loyalty.program import stored_program
from omniloop.loyalty.risk import blacklist, mark_no_show
from omniloop.tenancy.access import Actor

BIRTHDAY = "會員生日禮：免費拿鐵一杯"
SEED = 5_2026
# A café's program: small baskets, so 1 point per NT$30 and tiers a regular can reach.
TIERS = [
    {"code": "member", "name": "一般會員", "threshold_minor": 0, "multiplier_bp": 10000},
    {"code": "silver", "name": "銀卡會員", "threshold_minor": 300000, "multiplier_bp": 12000},
    {"code": "gold", "name": "金卡會員", "threshold_minor": 800000, "multiplier_bp": 15000},
]


def configure_program(session: Session, actor: Actor) -> bool:
    """Set the café's program before the history is loaded (its orders earn by it); only
    when the brand has no program yet, so settings changed in the admin are kept."""
    if session.get(LoyaltyProgram, actor.tenant_id) is not None:
        return False
    program = stored_program(session, actor.tenant_id)
    program.earn_unit_minor = 3000
    program.tiers = [{**tier, "birthday_campaign_id": None} for tier in TIERS]
    program.no_show_penalty_points = 30
    program.auto_blacklist_no_shows = 3
    program.auto_blacklist_days = 60
    session.flush()
    return True


def load_loyalty(session: Session, actor: Actor, *, timezone: str,
                 store_ids: dict[str, str]) -> dict[str, int]:
    """Once: nothing when the birthday campaign exists (all of this is one transaction)."""
    if session.scalar(select(func.count()).select_from(Campaign).where(
            Campaign.tenant_id == actor.tenant_id, Campaign.name == BIRTHDAY)):
        return {}
    zone = ZoneInfo(timezone)
    cutoff = datetime.combine(HISTORY_END + timedelta(days=1), time(0), zone).astimezone(UTC)
    rng = random.Random(SEED)
    created: Counter[str] = Counter()

    birthday = create_campaign(session, actor, CampaignCreate.model_validate({
        "name": BIRTHDAY, "kind": CampaignKind.free_item, "free_sku": "CF-LATTE",
        "description": "銀卡、金卡會員生日當月送拿鐵一杯，全門市適用。",
        "terms": "生日當月領取，30 天內有效；每年一次，不得轉讓。",
        "starts_at": (cutoff - timedelta(days=365)).isoformat(),
        "ends_at": (cutoff + timedelta(days=3 * 365)).isoformat(),
        "coupon_valid_days": 30, "per_customer_limit": 5, "claim_channels": ["birthday"]}))
    launch_campaign(session, actor, birthday.id)
    created["campaigns"] += 1
    program = stored_program(session, actor.tenant_id)
    program.tiers = [{**tier, "birthday_campaign_id": birthday.id if tier["code"] != "member"
                      else tier.get("birthday_campaign_id")} for tier in program.tiers]
    session.flush()

    # The daily job as of the day after the history: lots older than 12 months expire, tiers
    # follow the last 12 months' spend, November's birthdays get their coupon.
    run = run_daily(session, actor, now=cutoff)
    created["expired lots"] += run.expired_lots
    created["birthday coupons"] += run.birthdays.issued

    members = [customer_id for customer_id, _phone, _balance in session.execute(
        select(PointsAccount.customer_id, CustomerIdentity.value, PointsAccount.balance)
        .join(CustomerIdentity, (CustomerIdentity.tenant_id == PointsAccount.tenant_id)
              & (CustomerIdentity.customer_id == PointsAccount.customer_id))
        .where(PointsAccount.tenant_id == actor.tenant_id,
               CustomerIdentity.kind == IdentityKind.phone)
        .order_by(CustomerIdentity.value))]
    balances = dict(session.execute(select(PointsAccount.customer_id, PointsAccount.balance)
                                    .where(PointsAccount.tenant_id == actor.tenant_id)).all())
    spenders = [m for m in members if balances.get(m, 0) >= 2 * program.min_redeem_points]
    for index, customer_id in enumerate(rng.sample(spenders, min(len(spenders),
                                                                 max(5, len(spenders) // 5)))):
        points = rng.randint(program.min_redeem_points, min(balances[customer_id], 150))
        basket = points * program.point_value_minor * 10000 // program.max_redeem_share_bp
        redeem_points(session, actor, customer_id, points, order_total_minor=basket + 5000,
                      key=f"demo-points:{index}", reference=f"DEMO-POS-{index:04d}")
        created["points redemptions"] += 1

    stores = sorted(store_ids.values())
    # No-shows in the last two months: most people once, a few twice, one three times
    # (which blacklists them automatically).
    for index, customer_id in enumerate(rng.sample(members, min(len(members), 12))):
        times = 3 if index == 0 else 2 if index < 4 else 1
        for visit in range(times):
            due = datetime.combine(HISTORY_END - timedelta(days=rng.randint(3, 55)),
                                   time(rng.choice((11, 12, 18, 19))), zone).astimezone(UTC)
            kind = NoShowKind.booking if rng.random() < 0.7 else NoShowKind.pickup
            mark_no_show(session, actor, customer_id, kind=kind,
                         reference=f"DEMO-{kind.value.upper()}-{index:03d}-{visit}",
                         due_at=due, store_id=rng.choice(stores), now=cutoff,
                         note="訂位未到，電話未接" if kind == NoShowKind.booking
                         else "預購商品逾期未取")
            created["no-shows"] += 1
    if len(members) > 20:
        blacklist(session, actor, members[20], reason="多次以不實理由要求退款", now=cutoff,
                  ends_at=cutoff + timedelta(days=90))
        created["blacklisted"] += 1
    for index, customer_id in enumerate(members[30:33]):
        adjust_points(session, actor, customer_id, 50 + 25 * index,
                      "門市出餐延誤致歉" if index else "APP 點數未入帳補發",
                      key=f"demo-adjust:{index}")
        created["points adjustments"] += 1
    return dict(created)

