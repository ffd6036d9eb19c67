"""The demo's loyalty data: members in tiers, points earned, paid, expired and adjusted, a few
no-shows and a blacklist — all of it consistent, as the ledger's rules demand."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from omniloop.core import security
from omniloop.core.clock import as_utc
from omniloop.core.db import Session
from omniloop.demo import load_demo
from omniloop.demo.history import HISTORY_END
from omniloop.loyalty.liability import liability_report
from omniloop.loyalty.models import EntryKind, NoShow, PointsAccount, PointsEntry
from omniloop.loyalty.program import get_program
from omniloop.loyalty.risk import RiskLevel, flags_for
from omniloop.loyalty.tiers import rolling_spend, tier_for_spend
from omniloop.tenancy import staff
from omniloop.tenancy.access import system_actor

_hash_once = cache(security.hash_password)


@pytest.fixture(autouse=True)
def _hash_demo_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staff, "hash_password", _hash_once)


def test_demo_loyalty_is_consistent_and_tells_a_story(session: Session) -> None:
    result = load_demo(session, customers=40)
    session.commit()
    session.expire_all()
    tenant_id = result.tenant_id
    cutoff = datetime.combine(HISTORY_END + timedelta(days=1), time(0),
                              ZoneInfo("Asia/Taipei")).astimezone(UTC)

    entries = list(session.scalars(select(PointsEntry).where(PointsEntry.tenant_id == tenant_id)))
    by_customer: dict[str, list[PointsEntry]] = defaultdict(list)
    for entry in entries:
        by_customer[entry.customer_id].append(entry)
    accounts = {a.customer_id: a for a in session.scalars(
        select(PointsAccount).where(PointsAccount.tenant_id == tenant_id))}
    for customer_id, rows in by_customer.items():
        balance = accounts[customer_id].balance
        assert balance == sum(e.points for e in rows) >= 0
        assert balance == sum(e.remaining for e in rows if e.lot_open)
        # Nothing left open that was due to expire by the demo's "now".
        assert all(e.expires_at is None or as_utc(e.expires_at) > cutoff
                   for e in rows if e.lot_open)
    kinds = {e.kind for e in entries}
    assert {EntryKind.earn, EntryKind.expire, EntryKind.redeem, EntryKind.adjust,
            EntryKind.penalty} <= kinds

    # Tiers are what the rolling spend as of the cutoff says.
    program = get_program(session, tenant_id)
    spend = rolling_spend(session, tenant_id, cutoff)
    for customer_id, account in accounts.items():
        if customer_id in spend or account.tier_code is not None:
            assert account.tier_code == tier_for_spend(program, spend.get(customer_id, 0))
    assert len({a.tier_code for a in accounts.values()}) >= 2

    no_shows = list(session.scalars(select(NoShow).where(NoShow.tenant_id == tenant_id)))
    assert len(no_shows) == 17
    assert all(0 <= n.penalty_points <= program.no_show_penalty_points for n in no_shows)
    flags = flags_for(session, tenant_id, sorted({n.customer_id for n in no_shows}),
                      now=cutoff)
    assert RiskLevel.blacklisted in {f.level for f in flags.values()}  # three no-shows
    assert RiskLevel.high in {f.level for f in flags.values()}

    report = liability_report(session, system_actor(tenant_id))
    assert report.points == sum(a.balance for a in accounts.values())
    assert report.value_minor == report.points * program.point_value_minor
