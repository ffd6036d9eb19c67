"""The demo brand's analytics: two RFM snapshots a quarter apart and one saved segment, so
the RFM page shows who moved between segments from the first visit.

Idempotent like the rest of the demo: nothing is added when the brand has snapshots already.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from omniloop.analytics import segments
from omniloop.analytics.models import RfmSnapshot
from omniloop.core.db import Session
from omniloop.tenancy.access import Actor

WINBACK_SEGMENT = "回流名單：流失風險與不能失去"


def load_analytics(session: Session, actor: Actor, history_end: date) -> None:
    if session.scalar(select(func.count()).select_from(RfmSnapshot).where(
            RfmSnapshot.tenant_id == actor.tenant_id)):
        return
    segments.take_snapshot(session, actor, history_end - timedelta(days=91))
    segments.take_snapshot(session, actor, history_end)
    segments.save_segment(session, actor, WINBACK_SEGMENT, ["at_risk", "cant_lose"],
                          history_end)
