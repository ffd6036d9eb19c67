"""What loyalty adds to the views of one person: the points section of the 360 page and the
ledger in the personal-data export. Importing this module registers both."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.customers.models import Customer
from omniloop.customers.privacy import register_export_section
from omniloop.customers.sections import ProfileSection, register_section
from omniloop.loyalty.ledger import expiring_soon, history
from omniloop.loyalty.member_card import member_of
from omniloop.loyalty.models import PointsEntry
from omniloop.tenancy.access import Actor

RECENT_ENTRIES = 20
ENTRY_LABELS = {
    "earn": N_("Earned"), "redeem": N_("Paid with points"), "expire": N_("Expired"),
    "adjust": N_("Adjusted"), "penalty": N_("Penalty"), "reversal": N_("Refund reversal"),
}


def _points_section(session: Session, actor: Actor, customer: Customer,
                    ids: set[str]) -> dict[str, Any]:
    member = member_of(session, actor, customer.id)
    soon = [(points, first) for _, points, first
            in expiring_soon(session, actor.tenant_id, customer_id=customer.id)]
    return {"member": member, "expiring": soon[0] if soon else None,
            "entries": history(session, actor.tenant_id, customer.id, RECENT_ENTRIES),
            "labels": ENTRY_LABELS}


def _export_points(session: Session, actor: Actor, customer: Customer,
                   ids: set[str]) -> list[dict[str, Any]]:
    entries = session.scalars(select(PointsEntry).where(
        PointsEntry.tenant_id == actor.tenant_id, PointsEntry.customer_id.in_(ids))
        .order_by(PointsEntry.created_at, PointsEntry.id))
    return [{"kind": e.kind.value, "points": e.points, "balance_after": e.balance_after,
             "reason": e.reason, "order_id": e.order_id, "created_at": e.created_at.isoformat(),
             "expires_at": e.expires_at.isoformat() if e.expires_at else None}
            for e in entries]


register_section(ProfileSection("points", N_("Points"), "admin/sections/points.html", 35,
                                _points_section))
register_export_section("points", _export_points)
