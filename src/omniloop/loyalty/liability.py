"""The liability report: points customers hold, what they are worth, and when they expire.

Open lots are the liability (their `remaining` sums to every balance); grouped by the month
they expire in, in the brand's time zone, so finance sees what will fall away when.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from omniloop.core.clock import as_utc
from omniloop.core.db import Session
from omniloop.loyalty.models import EntryKind, PointsAccount, PointsEntry
from omniloop.loyalty.program import get_program
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.tenants import get_tenant


@dataclass(frozen=True)
class LiabilityMonth:
    month: str | None  # "2027-03"; None: points that never expire
    points: int
    value_minor: int
    lots: int


@dataclass(frozen=True)
class Liability:
    points: int
    value_minor: int
    members_with_points: int
    unrecovered_points: int  # taken back on refunds but already spent: the brand's loss
    months: list[LiabilityMonth]
    currency: str


def liability_report(session: Session, actor: Actor) -> Liability:
    actor.require(Permission.campaigns_read)
    tenant = get_tenant(session, actor.tenant_id)
    zone = ZoneInfo(tenant.timezone)
    value = get_program(session, actor.tenant_id).point_value_minor
    points: dict[str | None, int] = defaultdict(int)
    lots: dict[str | None, int] = defaultdict(int)
    rows = session.execute(
        select(PointsEntry.expires_at, PointsEntry.remaining)
        .where(PointsEntry.tenant_id == actor.tenant_id, PointsEntry.lot_open.is_(True))
        .execution_options(yield_per=10_000))
    for expires_at, remaining in rows:
        month = as_utc(expires_at).astimezone(zone).strftime("%Y-%m") if expires_at else None
        points[month] += int(remaining)
        lots[month] += 1
    months = [LiabilityMonth(m, points[m], points[m] * value, lots[m])
              for m in sorted(points, key=lambda m: (m is None, m or ""))]
    total = sum(points.values())
    holders = session.scalar(select(func.count()).where(
        PointsAccount.tenant_id == actor.tenant_id, PointsAccount.balance > 0)) or 0
    # Refund reversals only: a no-show penalty that found too few points is not a loss.
    unrecovered = session.scalar(select(func.coalesce(func.sum(PointsEntry.unrecovered), 0))
                                 .where(PointsEntry.tenant_id == actor.tenant_id,
                                        PointsEntry.kind == EntryKind.reversal)) or 0
    return Liability(points=total, value_minor=total * value, members_with_points=int(holders),
                     unrecovered_points=int(unrecovered), months=months,
                     currency=tenant.currency)

