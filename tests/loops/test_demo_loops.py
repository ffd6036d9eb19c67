"""The demo's in-store loop: touchpoints in every store, and a last month whose loop report
tells a story (scans, identified people, feedback, reviews, referral chains, first visits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from omniloop.core import security
from omniloop.core.db import Session
from omniloop.demo import load_demo
from omniloop.demo.history import HISTORY_END
from omniloop.loops.models import Placement, Referral, ReferralStatus, Touchpoint
from omniloop.loops.report import loop_report
from omniloop.tenancy import staff
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Store

CUSTOMERS = 120


@pytest.fixture(autouse=True)
def _quick_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = security.hash_password("demo")
    monkeypatch.setattr(staff, "hash_password", lambda _password: hashed)


def test_demo_loop_tells_a_story(session: Session) -> None:
    result = load_demo(session, customers=CUSTOMERS)
    session.commit()
    stores = list(session.scalars(select(Store)))
    for store in stores:
        placements = set(session.scalars(select(Touchpoint.placement).where(
            Touchpoint.store_id == store.id)))
        assert {Placement.table, Placement.counter, Placement.receipt} <= placements
    referrals = list(session.scalars(select(Referral)))
    assert referrals
    assert any(r.status == ReferralStatus.qualified for r in referrals)
    friends = {r.friend_id for r in referrals}
    assert any(r.referrer_id in friends for r in referrals), "no chain of two"
    end = datetime.combine(HISTORY_END + timedelta(days=1), datetime.min.time(), UTC)
    report = loop_report(session, system_actor(result.tenant_id), end - timedelta(days=31), end)
    overall = report.overall
    assert overall.scans > overall.identified > overall.acted > 0
    assert overall.actions.get("feedback_submitted", 0) > 0
    assert overall.actions.get("review_clicked", 0) > 0
    assert overall.referred > 0
    assert 0 < overall.first_purchases <= overall.referred
    assert overall.k is not None
    assert overall.k > 0
    assert sum(f.scans for f in report.stores) == overall.scans
    # The touchpoints' scan counters agree with the scans recorded (they decide retire or
    # delete in the admin).
    from omniloop.customers.models import Event

    at_touchpoints = sum(1 for props in session.scalars(
        select(Event.properties).where(Event.type == "qr_scan"))
        if props.get("touchpoint_id"))
    assert at_touchpoints > 0
    assert session.scalar(select(func.sum(Touchpoint.scans))) == at_touchpoints
    again = load_demo(session, customers=CUSTOMERS)  # a second load adds nothing
    session.commit()
    assert "touchpoints" not in again.created
    assert session.scalar(select(func.count()).select_from(Referral)) == len(referrals)
