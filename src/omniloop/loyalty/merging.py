"""Points follow a person through profile merges, and back when a merge is undone.

Events and orders keep the profile they arrived on and are read through the merge record;
points cannot be, because a balance is spent from one account. So a merge moves the merged
profile's open lots to the survivor — each as a new lot with the same expiry, and one entry
taking them off the merged profile — and an undo moves back what is left of exactly those
lots (points the person spent in between stay spent). Both are ordinary ledger entries with
idempotency keys, so the three figures (balance, entries, lots) keep agreeing.
"""

from __future__ import annotations

from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.customers.models import CustomerMerge
from omniloop.loyalty.ledger import Source, credit, debit
from omniloop.loyalty.models import EntryKind, PointsEntry
from omniloop.tenancy.access import Actor


def _move_lots(session: Session, actor: Actor, lots: list[PointsEntry], source_id: str,
               target_id: str, key: str, reason: str) -> None:
    moved = 0
    for lot in lots:
        credit(session, actor, target_id, lot.remaining, EntryKind.adjust,
               f"{key}:in:{lot.id}", Source(reason=reason, reference=lot.id),
               expires_at=lot.expires_at)
        moved += lot.remaining
    if moved:
        debit(session, actor, source_id, moved, EntryKind.adjust, f"{key}:out",
              Source(reason=reason), preferred_lots=[lot.id for lot in lots])


def _open_lots(session: Session, tenant_id: str, customer_id: str,
               key_prefix: str | None = None) -> list[PointsEntry]:
    query = select(PointsEntry).where(
        PointsEntry.tenant_id == tenant_id, PointsEntry.customer_id == customer_id,
        PointsEntry.lot_open.is_(True), PointsEntry.remaining > 0)
    if key_prefix is not None:
        query = query.where(PointsEntry.idempotency_key.startswith(key_prefix,
                                                                   autoescape=True))
    return list(session.scalars(query.order_by(PointsEntry.expires_at, PointsEntry.id)))


def moved_lots(session: Session, tenant_id: str, lot_id: str) -> list[str]:
    """A lot and the lots it was moved into by merges (and their undos), in that order: a
    refund's reversal takes from these first, wherever the points went."""
    found = [lot_id]
    frontier = [lot_id]
    while frontier and len(found) < 50:
        frontier = list(session.scalars(select(PointsEntry.id).where(
            PointsEntry.tenant_id == tenant_id, PointsEntry.reference.in_(frontier),
            PointsEntry.kind == EntryKind.adjust, PointsEntry.points > 0,
            PointsEntry.idempotency_key.like("%merge:%:in:%"))))
        found.extend(frontier)
    return found


def move_points_on_merge(session: Session, actor: Actor, record: CustomerMerge) -> None:
    lots = _open_lots(session, actor.tenant_id, record.merged_id)
    _move_lots(session, actor, lots, record.merged_id, record.survivor_id,
               f"merge:{record.id}", f"profile {record.merged_id} merged in")


def move_points_back(session: Session, actor: Actor, record: CustomerMerge) -> None:
    lots = _open_lots(session, actor.tenant_id, record.survivor_id, f"merge:{record.id}:in:")
    _move_lots(session, actor, lots, record.survivor_id, record.merged_id,
               f"unmerge:{record.id}", f"merge with {record.survivor_id} undone")
