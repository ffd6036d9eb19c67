"""The demo brand comes with two RFM snapshots a quarter apart and a saved win-back
segment, once: loading again adds nothing."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

import pytest
from sqlalchemy import func, select

from omniloop.analytics import segments
from omniloop.analytics.models import RfmSnapshot, SavedSegment
from omniloop.core import security
from omniloop.core.db import Session
from omniloop.demo import load_demo
from omniloop.demo.history import HISTORY_END
from omniloop.tenancy import staff
from omniloop.tenancy.access import system_actor

_hash_once = cache(security.hash_password)


@pytest.fixture(autouse=True)
def _hash_demo_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staff, "hash_password", _hash_once)


def test_demo_has_snapshots_and_a_segment_once(session: Session) -> None:
    result = load_demo(session, customers=40)
    session.commit()
    actor = system_actor(result.tenant_id)
    snapshots = segments.list_snapshots(session, actor)
    assert [s.as_of for s in snapshots] == [HISTORY_END, HISTORY_END - timedelta(days=91)]
    moved = segments.movement(session, actor, snapshots[1].id, snapshots[0].id)
    assert sum(moved.counts.values()) >= 40
    saved = segments.list_segments(session, actor)
    assert [s.rfm_segments for s in saved] == [["at_risk", "cant_lose"]]
    assert saved[0].members == len(segments.segment_customer_ids(session, actor, saved[0].id))
    load_demo(session, customers=40)
    session.commit()
    assert session.scalar(select(func.count()).select_from(RfmSnapshot)) == 2
    assert session.scalar(select(func.count()).select_from(SavedSegment)) == 1
