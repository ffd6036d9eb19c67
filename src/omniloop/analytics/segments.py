"""RFM snapshots, the movement between two of them, and saved segments as audiences.

A snapshot stores one scoring per customer so that a later scoring can be compared with it:
`movement` counts customers per (segment before, segment after) and `movers` names them. A
saved segment stores its definition (RFM groups) and its members as scored when it was saved
or last refreshed; `segment_customer_ids` is what the messaging and campaign modules call to
reach them.

Writes are brand-wide (`campaigns.manage` without a store restriction), reads need
`campaigns.read`, also brand-wide (see `rfm.require_brand_wide`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.orm import aliased

from omniloop.analytics.errors import SegmentInvalid, SegmentNotFound, SnapshotNotFound
from omniloop.analytics.models import (
    RfmSnapshot,
    RfmSnapshotMember,
    SavedSegment,
    SavedSegmentMember,
)
from omniloop.analytics.rfm import SEGMENT_KEYS, RfmScores, require_brand_wide, score_customers
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.tenancy.access import Actor, Permission

INSERT_CHUNK = 5_000


def _bulk_insert(session: Session, table: type[RfmSnapshotMember] | type[SavedSegmentMember],
                 rows: list[dict[str, object]]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(table), rows[start:start + INSERT_CHUNK])


# --- snapshots ------------------------------------------------------------------------------


def take_snapshot(session: Session, actor: Actor, as_of: date) -> RfmSnapshot:
    """Score every customer as of `as_of` and keep the scores."""
    require_brand_wide(actor, Permission.campaigns_manage)
    scores = score_customers(session, actor, as_of)
    snapshot = RfmSnapshot(tenant_id=actor.tenant_id, as_of=as_of, customers=len(scores),
                           created_by=actor.label)
    session.add(snapshot)
    session.flush()
    _bulk_insert(session, RfmSnapshotMember, [
        {"tenant_id": actor.tenant_id, "snapshot_id": snapshot.id, "customer_id": cid,
         "recency_days": int(rec), "frequency": int(freq), "monetary_minor": int(money),
         "r": int(r), "f": int(f), "m": int(m), "segment": SEGMENT_KEYS[int(seg)]}
        for cid, rec, freq, money, r, f, m, seg in zip(
            scores.customer_ids, scores.recency_days.tolist(), scores.frequency.tolist(),
            scores.monetary_minor.tolist(), scores.r.tolist(), scores.f.tolist(),
            scores.m.tolist(), scores.segment.tolist(), strict=True)])
    return snapshot


def list_snapshots(session: Session, actor: Actor) -> list[RfmSnapshot]:
    require_brand_wide(actor)
    return list(session.scalars(select(RfmSnapshot).where(
        RfmSnapshot.tenant_id == actor.tenant_id)
        .order_by(RfmSnapshot.as_of.desc(), RfmSnapshot.created_at.desc())))


def get_snapshot(session: Session, actor: Actor, snapshot_id: str) -> RfmSnapshot:
    require_brand_wide(actor)
    snapshot = session.get(RfmSnapshot, (actor.tenant_id, snapshot_id))
    if snapshot is None:
        raise SnapshotNotFound()
    return snapshot


@dataclass(frozen=True)
class Movement:
    """Customers per (segment in the earlier snapshot, segment in the later one). `None` as
    the earlier segment: not scored then (no orders yet); as the later: no longer scored."""

    before: RfmSnapshot
    after: RfmSnapshot
    counts: dict[tuple[str | None, str | None], int]

    def moved(self) -> int:
        return sum(n for (a, b), n in self.counts.items() if a != b)

    def row(self, before: str | None) -> dict[str | None, int]:
        found: dict[str | None, int] = defaultdict(int)
        for (a, b), n in self.counts.items():
            if a == before:
                found[b] += n
        return found


def movement(session: Session, actor: Actor, before_id: str, after_id: str) -> Movement:
    """How customers moved between two snapshots, counted in the database."""
    before = get_snapshot(session, actor, before_id)
    after = get_snapshot(session, actor, after_id)
    old, new = aliased(RfmSnapshotMember), aliased(RfmSnapshotMember)
    counts: dict[tuple[str | None, str | None], int] = {}
    for a, b, n in session.execute(
            select(old.segment, new.segment, func.count())
            .select_from(old)
            .outerjoin(new, and_(new.tenant_id == old.tenant_id, new.snapshot_id == after.id,
                                 new.customer_id == old.customer_id))
            .where(old.tenant_id == actor.tenant_id, old.snapshot_id == before.id)
            .group_by(old.segment, new.segment)):
        counts[(a, b)] = n
    # Customers first scored in the later snapshot.
    for b, n in session.execute(
            select(new.segment, func.count())
            .select_from(new)
            .outerjoin(old, and_(old.tenant_id == new.tenant_id, old.snapshot_id == before.id,
                                 old.customer_id == new.customer_id))
            .where(new.tenant_id == actor.tenant_id, new.snapshot_id == after.id,
                   old.customer_id.is_(None))
            .group_by(new.segment)):
        counts[(None, b)] = n
    return Movement(before=before, after=after, counts=counts)


def movers(session: Session, actor: Actor, before_id: str, after_id: str,
           from_segment: str, to_segment: str, limit: int = 500) -> list[str]:
    """Customer ids that were in `from_segment` before and are in `to_segment` after."""
    before = get_snapshot(session, actor, before_id)
    after = get_snapshot(session, actor, after_id)
    old, new = aliased(RfmSnapshotMember), aliased(RfmSnapshotMember)
    return list(session.scalars(
        select(old.customer_id)
        .join(new, and_(new.tenant_id == old.tenant_id, new.snapshot_id == after.id,
                        new.customer_id == old.customer_id))
        .where(old.tenant_id == actor.tenant_id, old.snapshot_id == before.id,
               old.segment == from_segment, new.segment == to_segment)
        .order_by(old.customer_id).limit(limit)))


# --- saved segments --------------------------------------------------------------------------


def _check_definition(name: str, rfm_segments: list[str]) -> tuple[str, list[str]]:
    name = name.strip()
    wanted = [key for key in SEGMENT_KEYS if key in set(rfm_segments)]
    if not name or len(name) > 120 or not wanted or len(wanted) != len(set(rfm_segments)):
        raise SegmentInvalid(field="name" if not name or len(name) > 120 else "rfm_segments")
    return name, wanted


def _materialise(session: Session, actor: Actor, segment: SavedSegment,
                 scores: RfmScores) -> None:
    session.execute(delete(SavedSegmentMember).where(
        SavedSegmentMember.tenant_id == actor.tenant_id,
        SavedSegmentMember.segment_id == segment.id))
    members = scores.members(segment.rfm_segments)
    _bulk_insert(session, SavedSegmentMember, [
        {"tenant_id": actor.tenant_id, "segment_id": segment.id, "customer_id": cid}
        for cid in members])
    segment.members = len(members)
    segment.as_of = scores.as_of
    segment.refreshed_at = utcnow()


def save_segment(session: Session, actor: Actor, name: str, rfm_segments: list[str],
                 as_of: date) -> SavedSegment:
    """Save a named audience of RFM groups with its members as scored on `as_of`."""
    require_brand_wide(actor, Permission.campaigns_manage)
    name, wanted = _check_definition(name, rfm_segments)
    segment = SavedSegment(tenant_id=actor.tenant_id, name=name, rfm_segments=wanted,
                           as_of=as_of, members=0, created_by=actor.label)
    session.add(segment)
    session.flush()
    _materialise(session, actor, segment, score_customers(session, actor, as_of))
    session.flush()
    return segment


def refresh_segment(session: Session, actor: Actor, segment_id: str,
                    as_of: date) -> SavedSegment:
    """Score again as of `as_of` and replace the members: the definition stays."""
    require_brand_wide(actor, Permission.campaigns_manage)
    segment = get_segment(session, actor, segment_id)
    _materialise(session, actor, segment, score_customers(session, actor, as_of))
    session.flush()
    return segment


def get_segment(session: Session, actor: Actor, segment_id: str) -> SavedSegment:
    require_brand_wide(actor)
    segment = session.get(SavedSegment, (actor.tenant_id, segment_id))
    if segment is None:
        raise SegmentNotFound()
    return segment


def list_segments(session: Session, actor: Actor) -> list[SavedSegment]:
    require_brand_wide(actor)
    return list(session.scalars(select(SavedSegment).where(
        SavedSegment.tenant_id == actor.tenant_id).order_by(SavedSegment.created_at.desc())))


def segment_customer_ids(session: Session, actor: Actor, segment_id: str) -> list[str]:
    """The members of a saved segment, for a campaign audience or a message: the call other
    modules make (e.g. `campaigns.claims.assign_audience(..., customer_ids=...)`)."""
    segment = get_segment(session, actor, segment_id)
    return list(session.scalars(select(SavedSegmentMember.customer_id).where(
        SavedSegmentMember.tenant_id == actor.tenant_id,
        SavedSegmentMember.segment_id == segment.id).order_by(SavedSegmentMember.customer_id)))

