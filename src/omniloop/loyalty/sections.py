"""What loyalty adds to the views of one person: the points section of the 360 page (balance,
history, tier history, the manual adjustment form, and risk: no-shows and the blacklist) and
the ledger in the personal-data export. Importing this module registers both; the forms post
to `loyalty/pages.py`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.core.security import random_token
from omniloop.customers.models import Customer
from omniloop.customers.privacy import register_export_section
from omniloop.customers.sections import ProfileSection, register_section
from omniloop.loyalty.ledger import expiring_soon, history
from omniloop.loyalty.member_card import member_of
from omniloop.loyalty.models import NoShowKind, PointsEntry
from omniloop.loyalty.program import get_program
from omniloop.loyalty.risk import RISK_LABELS, blacklist_of, no_shows_of
from omniloop.loyalty.tiers import tier_history
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import list_stores
from omniloop.tenancy.tenants import get_tenant

RECENT_ENTRIES = 20
ENTRY_LABELS = {
    "earn": N_("Earned"), "redeem": N_("Paid with points"), "expire": N_("Expired"),
    "adjust": N_("Adjusted"), "penalty": N_("Penalty"), "reversal": N_("Refund reversal"),
}
NO_SHOW_LABELS = {NoShowKind.booking: N_("Booking"), NoShowKind.pickup: N_("Reserved pickup")}


def _points_section(session: Session, actor: Actor, customer: Customer,
                    ids: set[str]) -> dict[str, Any]:
    member = member_of(session, actor, customer.id)
    soon = [(points, first) for _, points, first
            in expiring_soon(session, actor.tenant_id, customer_id=customer.id)]
    program = get_program(session, actor.tenant_id)
    can_mark = actor.can(Permission.pos_use)
    stores = list_stores(session, actor)
    timezone = get_tenant(session, actor.tenant_id).timezone
    return {"member": member, "expiring": soon[0] if soon else None,
            "entries": history(session, actor.tenant_id, customer.id, RECENT_ENTRIES),
            "labels": ENTRY_LABELS,
            "tier_changes": tier_history(session, actor.tenant_id, customer.id),
            "tier_names": {str(t.get("code")): str(t.get("name")) for t in program.tiers or []},
            "risk": member.risk, "risk_labels": RISK_LABELS,
            "no_shows": no_shows_of(session, actor.tenant_id, customer.id),
            "no_show_kinds": list(NoShowKind), "no_show_labels": NO_SHOW_LABELS,
            "blacklist": blacklist_of(session, actor.tenant_id, customer.id),
            "store_names": {s.id: s.name for s in stores},
            "stores": [s for s in stores if s.active] if can_mark else [],
            # Owners and marketers adjust and blacklist (as the API); the counter marks
            # no-shows.
            "can_adjust": actor.can(Permission.customers_merge),
            "can_blacklist": actor.can(Permission.customers_merge),
            "can_mark": can_mark, "sees_store": actor.sees_store,
            # Made with the form: sending it twice is one adjustment.
            "adjust_key": random_token(18),
            "now_local": to_local(utcnow(), timezone).strftime("%Y-%m-%dT%H:%M")}


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
