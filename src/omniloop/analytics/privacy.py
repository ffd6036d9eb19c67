"""Erasure: an erased person leaves every RFM snapshot and saved segment.

Snapshots and segments hold only ids and figures, but a saved segment is an audience: once
someone asked to be forgotten, no later campaign may reach them through a list saved before.
Registered with `customers.privacy` when the analytics pages are imported (app start-up).
"""

from __future__ import annotations

from sqlalchemy import delete

from omniloop.analytics.models import RfmSnapshotMember, SavedSegmentMember
from omniloop.core.db import Session
from omniloop.customers.models import Customer
from omniloop.customers.privacy import register_erase_step
from omniloop.tenancy.access import Actor


def _erase(session: Session, actor: Actor, survivor: Customer, ids: set[str]) -> int:
    removed = 0
    for table in (RfmSnapshotMember, SavedSegmentMember):
        result = session.execute(delete(table).where(
            table.tenant_id == actor.tenant_id, table.customer_id.in_(ids)))
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


register_erase_step("analytics", _erase)
