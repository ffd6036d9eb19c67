"""RFM scores and segments, recomputed independently from the raw order rows; snapshots,
movement between them, and saved segments as audiences."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import numpy as np
import pytest

from omniloop.analytics import rfm, segments
from omniloop.analytics.errors import SegmentInvalid, SegmentNotFound
from omniloop.core.clock import to_local
from omniloop.core.db import Session
from omniloop.core.errors import Forbidden
from omniloop.orders.models import OrderStatus
from omniloop.tenancy.access import Permission, staff_actor, system_actor
from omniloop.tenancy.models import Role
from tests.analytics.factories import END, History, make_history, raw_orders, survivor_map
from tests.tenancy.factories import fresh, make_tenant


@pytest.fixture
def history(session: Session) -> History:
    return make_history(session, make_tenant(session))


def expected_segment(r: int, f: int, m: int) -> str:
    """DESIGN's segments as the rules docs/analytics.md states them, written out as rules."""
    fm = (f + m + 1) // 2
    if r == 5 and fm >= 4:
        return "champions"
    if r in (3, 4) and fm >= 4:
        return "loyal"
    if r in (4, 5) and fm in (2, 3):
        return "potential_loyalist"
    if r == 5 and fm == 1:
        return "new"
    if r == 4 and fm == 1:
        return "promising"
    if r == 3 and fm == 3:
        return "need_attention"
    if r == 3 and fm <= 2:
        return "about_to_sleep"
    if r <= 2 and fm == 5:
        return "cant_lose"
    if r <= 2 and fm in (3, 4):
        return "at_risk"
    if r == 1 and fm == 1:
        return "lost"
    return "hibernating"


def independent_rfm(session: Session, tenant_id: str, as_of: date,
                    timezone: str = "Asia/Taipei") -> dict[str, tuple[int, int, int, int,
                                                                      int, int, str]]:
    owners = survivor_map(session, tenant_id)
    last: dict[str, date] = {}
    count: dict[str, int] = defaultdict(int)
    money: dict[str, int] = defaultdict(int)
    for order in raw_orders(session, tenant_id):
        day = to_local(order.paid_at, timezone).date()
        if order.customer_id is None or day > as_of or order.status == OrderStatus.refunded:
            continue
        who = owners[order.customer_id]
        last[who] = max(last.get(who, day), day)
        count[who] += 1
        money[who] += order.total_minor - order.refunded_minor
    recency = {c: (as_of - d).days for c, d in last.items()}
    n = len(last)

    def fifths(values: dict[str, int], better_is_higher: bool) -> dict[str, int]:
        out = {}
        for c, v in values.items():
            worse = sum(1 for w in values.values() if (w < v if better_is_higher else w > v))
            out[c] = 1 + (5 * worse) // n
        return out

    rs, fs, ms = fifths(recency, False), fifths(count, True), fifths(money, True)
    return {c: (recency[c], count[c], money[c], rs[c], fs[c], ms[c],
                expected_segment(rs[c], fs[c], ms[c])) for c in last}


def as_dict(scores: rfm.RfmScores) -> dict[str, tuple[int, int, int, int, int, int, str]]:
    return {c: (int(scores.recency_days[i]), int(scores.frequency[i]),
                int(scores.monetary_minor[i]), int(scores.r[i]), int(scores.f[i]),
                int(scores.m[i]), rfm.SEGMENT_KEYS[int(scores.segment[i])])
            for i, c in enumerate(scores.customer_ids)}


@pytest.mark.parametrize("days_back", [0, 45])
def test_scores_equal_an_independent_computation(session: Session, history: History,
                                                 days_back: int) -> None:
    as_of = END - timedelta(days=days_back)
    fresh(session)
    ours = as_dict(rfm.score_customers(session, system_actor(history.tenant.id), as_of))
    theirs = independent_rfm(session, history.tenant.id, as_of)
    assert ours == theirs
    assert len(ours) >= 20
    # The merged-away profile's orders count for its survivor; it is not scored itself.
    owners = survivor_map(session, history.tenant.id)
    assert owners[history.customers[2]] != history.customers[2] or \
        owners[history.customers[1]] != history.customers[1]
    assert not {c for c in ours if owners[c] != c}


def test_every_score_grid_cell_names_one_segment() -> None:
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                got = rfm.segment_of(np.array([r], np.int8), np.array([f], np.int8),
                                     np.array([m], np.int8))
                assert rfm.SEGMENT_KEYS[int(got[0])] == expected_segment(r, f, m)
    assert set(rfm.GRID.flatten().tolist()) == set(range(len(rfm.SEGMENT_KEYS)))


def test_quintiles_give_ties_one_score() -> None:
    scores = rfm.quintile_scores(np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 10], dtype=np.int64))
    assert scores.tolist() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]


def test_no_orders_gives_no_scores(session: Session) -> None:
    tenant = make_tenant(session)
    scores = rfm.score_customers(session, system_actor(tenant.id), END)
    assert len(scores) == 0
    assert sum(scores.segment_counts().values()) == 0


def test_store_bound_staff_cannot_read_customer_analytics(session: Session,
                                                          history: History) -> None:
    manager = staff_actor(history.tenant.id, "x", "m", Role.store_manager,
                          frozenset({history.stores[0].id}))
    assert manager.can(Permission.campaigns_read)
    with pytest.raises(Forbidden):
        rfm.score_customers(session, manager, END)


def test_snapshots_record_who_moved(session: Session, history: History) -> None:
    actor = system_actor(history.tenant.id)
    fresh(session)
    early = segments.take_snapshot(session, actor, END - timedelta(days=90))
    late = segments.take_snapshot(session, actor, END)
    session.commit()
    before = independent_rfm(session, history.tenant.id, END - timedelta(days=90))
    after = independent_rfm(session, history.tenant.id, END)
    expected: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for c in set(before) | set(after):
        expected[(before[c][6] if c in before else None,
                  after[c][6] if c in after else None)] += 1
    moved = segments.movement(session, actor, early.id, late.id)
    assert moved.counts == dict(expected)
    assert moved.moved() == sum(n for (a, b), n in expected.items() if a != b)
    for (a, b), n in expected.items():
        if a is not None and b is not None:
            names = segments.movers(session, actor, early.id, late.id, a, b)
            assert sorted(names) == sorted(c for c in before if c in after
                                           and before[c][6] == a and after[c][6] == b)
            assert len(names) == n


def test_saved_segment_is_an_audience(session: Session, history: History) -> None:
    actor = system_actor(history.tenant.id)
    fresh(session)
    expected = independent_rfm(session, history.tenant.id, END)
    groups = sorted({v[6] for v in expected.values()})[:2]
    saved = segments.save_segment(session, actor, "  Win-back  ", groups, END)
    session.commit()
    assert saved.name == "Win-back"
    members = segments.segment_customer_ids(session, actor, saved.id)
    assert members == sorted(c for c, v in expected.items() if v[6] in groups)
    assert saved.members == len(members) > 0
    # Another brand sees nothing of it.
    other = make_tenant(session)
    with pytest.raises(SegmentNotFound):
        segments.segment_customer_ids(session, system_actor(other.id), saved.id)
    # Refreshing as of an earlier day replaces the members.
    segments.refresh_segment(session, actor, saved.id, END - timedelta(days=60))
    session.commit()
    earlier = independent_rfm(session, history.tenant.id, END - timedelta(days=60))
    assert segments.segment_customer_ids(session, actor, saved.id) == sorted(
        c for c, v in earlier.items() if v[6] in groups)


@pytest.mark.parametrize(("name", "groups"), [
    ("", ["lost"]), ("x" * 121, ["lost"]), ("ok", []), ("ok", ["nonsense"]),
])
def test_bad_segment_definitions_are_refused(session: Session, name: str,
                                             groups: list[str]) -> None:
    tenant = make_tenant(session)
    with pytest.raises(SegmentInvalid):
        segments.save_segment(session, system_actor(tenant.id), name, groups, END)


def test_an_erased_person_leaves_saved_segments_and_snapshots(session: Session,
                                                              history: History) -> None:
    import omniloop.analytics.privacy  # noqa: F401  (registered at app start-up)
    from omniloop.customers.privacy import erase_customer

    actor = system_actor(history.tenant.id)
    fresh(session)
    everyone = list(rfm.SEGMENT_KEYS)
    saved = segments.save_segment(session, actor, "All", everyone, END)
    snapshot = segments.take_snapshot(session, actor, END)
    session.commit()
    members = segments.segment_customer_ids(session, actor, saved.id)
    gone = members[0]
    erase_customer(session, actor, gone, "asked to be forgotten")
    session.commit()
    assert gone not in segments.segment_customer_ids(session, actor, saved.id)
    moved = segments.movement(session, actor, snapshot.id, snapshot.id)
    assert sum(moved.counts.values()) == len(members) - 1
    # And the next scoring leaves them out.
    assert gone not in rfm.score_customers(session, actor, END).customer_ids


def test_totals_kept_by_the_listeners_equal_the_orders(session: Session,
                                                       history: History) -> None:
    """As of today RFM reads `customer_order_totals`, which the order and refund listeners
    keep; it must give what the GROUP BY over the orders and the raw rows give."""
    from sqlalchemy import select

    from omniloop.analytics.models import CustomerOrderTotal
    from omniloop.analytics.totals import rebuild_totals
    from omniloop.core.clock import utcnow

    actor = system_actor(history.tenant.id)
    today = to_local(utcnow(), "Asia/Taipei").date()
    fresh(session)
    from_totals = rfm.rfm_inputs(session, history.tenant.id, today, "Asia/Taipei")
    from_orders = rfm.rfm_inputs(session, history.tenant.id, today, "Asia/Taipei",
                                 use_totals=False)
    assert from_totals.customer_ids == from_orders.customer_ids
    assert from_totals.recency_days.tolist() == from_orders.recency_days.tolist()
    assert from_totals.frequency.tolist() == from_orders.frequency.tolist()
    assert from_totals.monetary_minor.tolist() == from_orders.monetary_minor.tolist()
    assert as_dict(rfm.score_customers(session, actor, today)) == independent_rfm(
        session, history.tenant.id, today)

    def rows() -> list[tuple[object, ...]]:
        fresh(session)
        return [tuple(r) for r in session.execute(
            select(CustomerOrderTotal.customer_id, CustomerOrderTotal.orders,
                   CustomerOrderTotal.net_minor, CustomerOrderTotal.last_paid_epoch)
            .where(CustomerOrderTotal.tenant_id == history.tenant.id, CustomerOrderTotal.orders > 0)
            .order_by(CustomerOrderTotal.customer_id)).all()]

    kept = rows()
    assert len(kept) >= 20
    rebuild_totals(session, history.tenant.id)
    session.commit()
    assert rows() == kept


@pytest.mark.parametrize("subtract_at_most", [1.0, rfm.SUBTRACT_AT_MOST])
def test_past_days_from_the_totals_equal_the_orders(session: Session, history: History,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    subtract_at_most: float) -> None:
    """A past day reads the totals less what was paid since (or, when that is most of the
    orders, the orders): every day gives what the GROUP BY over the orders gives."""
    monkeypatch.setattr(rfm, "SUBTRACT_AT_MOST", subtract_at_most)
    fresh(session)
    for days_back in (-1, 0, 1, 7, 30, 90, 180, 400):
        as_of = END - timedelta(days=days_back)
        via_totals = rfm.rfm_inputs(session, history.tenant.id, as_of, "Asia/Taipei")
        via_orders = rfm.rfm_inputs(session, history.tenant.id, as_of, "Asia/Taipei",
                                    use_totals=False)
        assert via_totals.customer_ids == via_orders.customer_ids, days_back
        assert via_totals.recency_days.tolist() == via_orders.recency_days.tolist(), days_back
        assert via_totals.frequency.tolist() == via_orders.frequency.tolist(), days_back
        assert via_totals.monetary_minor.tolist() == via_orders.monetary_minor.tolist()


def test_totals_out_of_step_with_the_orders_give_way_to_the_orders(
        session: Session, history: History) -> None:
    from sqlalchemy import update

    from omniloop.analytics.models import CustomerOrderTotal

    fresh(session)
    # A row lost (an order written around the listeners): the orders are the truth.
    session.execute(update(CustomerOrderTotal).where(
        CustomerOrderTotal.tenant_id == history.tenant.id,
        CustomerOrderTotal.customer_id == history.customers[1]).values(orders=0))
    as_of = END - timedelta(days=30)
    via_totals = rfm.rfm_inputs(session, history.tenant.id, as_of, "Asia/Taipei")
    via_orders = rfm.rfm_inputs(session, history.tenant.id, as_of, "Asia/Taipei",
                                use_totals=False)
    assert via_totals.customer_ids == via_orders.customer_ids
    assert via_totals.frequency.tolist() == via_orders.frequency.tolist()
    session.rollback()
