"""Journey triggers beyond follows and purchases: low feedback (through the loops module's
signal), and the time-based ones a periodic scan finds (birthday, coupon expiring, points
expiring, no visit). The scan runs with a controlled `now`, is idempotent, and runs one query
per trigger whatever the number of customers. Plus the staff-task action."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from typer.testing import CliRunner

from omniloop.campaigns.claims import issue_coupon
from omniloop.campaigns.models import Coupon, CouponStatus
from omniloop.cli import app as cli_app
from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session, set_database
from omniloop.customers.models import Customer
from omniloop.customers.privacy import erase_customer
from omniloop.loops.feedback import submit_feedback
from omniloop.loyalty.ledger import adjust_points
from omniloop.loyalty.models import PointsEntry
from omniloop.messaging import journeys, tasks
from omniloop.messaging.journey_scan import SCAN_HOUR, scan_due_triggers, scan_where_due
from omniloop.messaging.models import JourneyRun, JourneyRunStatus, StaffTask, StaffTaskStatus
from omniloop.tenancy.access import staff_actor, system_actor
from omniloop.tenancy.models import Role, Tenant
from tests.campaigns.factories import make_campaign
from tests.customers.factories import make_customer
from tests.orders.factories import make_order
from tests.tenancy.factories import make_staff, make_store

POINTS = [{"kind": "points", "points": 5}]


def _journey(database: Database, tenant: Tenant, trigger: str,
             actions: list[dict[str, Any]] | None = None, **fields: Any) -> str:
    with database.unit_of_work() as work:
        return journeys.create_journey(work, system_actor(tenant.id), name=trigger,
                                       trigger=trigger, actions=actions or POINTS, **fields).id


def _scan(database: Database, tenant: Tenant, now: datetime) -> dict[str, int]:
    with database.unit_of_work() as work:
        return scan_due_triggers(work, system_actor(tenant.id), now=now)


def _runs(session: Session, tenant: Tenant) -> list[JourneyRun]:
    session.rollback()
    return list(session.scalars(select(JourneyRun).where(JourneyRun.tenant_id == tenant.id)
                                .order_by(JourneyRun.created_at, JourneyRun.occurrence)))


def _customer(session: Session, tenant: Tenant, phone: str, **traits: Any) -> str:
    customer_id = make_customer(session, tenant, ("phone", phone))
    if traits:
        customer = session.get_one(Customer, (tenant.id, customer_id))
        for name, value in traits.items():
            setattr(customer, name, value)
        session.commit()
    return customer_id


@contextmanager
def _statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


# --- birthday -------------------------------------------------------------------------------


def test_birthday_enters_once_a_year_on_the_local_day(
        database: Database, session: Session, tenant: Tenant) -> None:
    journey_id = _journey(database, tenant, "birthday")
    today = _customer(session, tenant, "0912000001", birthday=date(1990, 11, 25))
    _customer(session, tenant, "0912000002", birthday=date(1990, 11, 26))
    leap = _customer(session, tenant, "0912000003", birthday=date(1996, 2, 29))
    _customer(session, tenant, "0912000004")  # no birthday known
    # 2026-11-24 17:00 UTC is already the 25th in Taipei (UTC+8).
    now = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    assert _scan(database, tenant, now)["birthday"] == 1
    assert _scan(database, tenant, now)["birthday"] == 0  # idempotent
    assert _scan(database, tenant, now + timedelta(hours=5))["birthday"] == 0
    assert _scan(database, tenant, datetime(2026, 11, 24, 15, 0, tzinfo=UTC))["birthday"] == 0
    runs = _runs(session, tenant)
    assert [(r.customer_id, r.occurrence) for r in runs] == [
        (today, f"birthday:2026:{today}")]
    assert runs[0].journey_id == journey_id
    assert runs[0].log[0]["step"] == "enter"
    # The next year's birthday enters again; 29 February is celebrated on the 28th.
    assert _scan(database, tenant, now + timedelta(days=365))["birthday"] == 1
    assert _scan(database, tenant, datetime(2027, 2, 27, 20, 0, tzinfo=UTC))["birthday"] == 1
    occurrences = sorted(r.occurrence for r in _runs(session, tenant))
    assert occurrences == sorted([f"birthday:2026:{today}", f"birthday:2027:{today}",
                                  f"birthday:2027:{leap}"])


def test_erased_and_merged_profiles_do_not_enter(
        database: Database, session: Session, tenant: Tenant) -> None:
    _journey(database, tenant, "birthday")
    gone = _customer(session, tenant, "0912000011", birthday=date(1990, 11, 25))
    with database.unit_of_work() as work:
        erase_customer(work, system_actor(tenant.id), gone, "asked")
    assert _scan(database, tenant, datetime(2026, 11, 25, 2, 0, tzinfo=UTC))["birthday"] == 0


# --- coupons expiring -------------------------------------------------------------------------


def test_coupon_expiring_within_three_days_enters_once_per_coupon(
        database: Database, session: Session, tenant: Tenant) -> None:
    _journey(database, tenant, "coupon_expiring")
    campaign = make_campaign(session, tenant, per_customer_limit=5)
    customer_id = _customer(session, tenant, "0912000021")
    with database.unit_of_work() as work:
        customer = work.get_one(Customer, (tenant.id, customer_id))
        coupons = [issue_coupon(work, system_actor(tenant.id), campaign.id, customer,
                                channel="web").coupon.id for _ in range(3)]
    now = utcnow()
    with database.unit_of_work() as work:
        soon, later, used = (work.get_one(Coupon, (tenant.id, c)) for c in coupons)
        soon.valid_until = now + timedelta(days=2)
        later.valid_until = now + timedelta(days=10)
        used.valid_until = now + timedelta(days=1)
        used.status = CouponStatus.redeemed
    assert _scan(database, tenant, now)["coupon_expiring"] == 1
    assert _scan(database, tenant, now + timedelta(hours=1))["coupon_expiring"] == 0
    assert [(r.customer_id, r.occurrence) for r in _runs(session, tenant)] == [
        (customer_id, f"coupon_expiring:{coupons[0]}")]
    # A week on, the second coupon's end is near; the first has ended.
    assert _scan(database, tenant, now + timedelta(days=8))["coupon_expiring"] == 1


# --- points expiring --------------------------------------------------------------------------


def test_points_expiring_enters_once_per_expiry_date(
        database: Database, session: Session, tenant: Tenant) -> None:
    _journey(database, tenant, "points_expiring")
    customer_id = _customer(session, tenant, "0912000031")
    _customer(session, tenant, "0912000032")  # no points
    now = utcnow()
    with database.unit_of_work() as work:
        actor = system_actor(tenant.id)
        first = adjust_points(work, actor, customer_id, 100, "test", key="p1").id
        second = adjust_points(work, actor, customer_id, 50, "test", key="p2").id
    with database.unit_of_work() as work:
        work.get_one(PointsEntry, (tenant.id, first)).expires_at = now + timedelta(days=20)
        work.get_one(PointsEntry, (tenant.id, second)).expires_at = now + timedelta(days=45)
    assert _scan(database, tenant, now)["points_expiring"] == 1
    assert _scan(database, tenant, now + timedelta(days=1))["points_expiring"] == 0
    # After the first lot's day has passed, the second lot's expiry is a new occurrence.
    assert _scan(database, tenant, now + timedelta(days=21))["points_expiring"] == 1
    runs = _runs(session, tenant)
    assert len({r.occurrence for r in runs}) == 2
    assert {r.customer_id for r in runs} == {customer_id}


# --- no visit ---------------------------------------------------------------------------------


def _order(session: Session, tenant: Tenant, phone: str, paid_at: datetime) -> str:
    return make_order(session, tenant, identities=[{"kind": "phone", "value": phone}],
                      paid_at=paid_at.isoformat()).id


def test_no_visit_for_60_days_and_a_new_visit_resets_it(
        database: Database, session: Session, tenant: Tenant) -> None:
    _journey(database, tenant, "no_visit")
    now = utcnow()
    _order(session, tenant, "0912000041", now - timedelta(days=120))
    lapsed_order = _order(session, tenant, "0912000041", now - timedelta(days=70))
    _order(session, tenant, "0912000042", now - timedelta(days=10))  # came recently
    _order(session, tenant, "0912000043", now - timedelta(days=90))
    _order(session, tenant, "0912000043", now - timedelta(days=5))  # came back
    _customer(session, tenant, "0912000044")  # never ordered
    assert _scan(database, tenant, now)["no_visit"] == 1
    assert _scan(database, tenant, now)["no_visit"] == 0
    runs = _runs(session, tenant)
    assert [r.occurrence for r in runs] == [f"no_visit:{lapsed_order}"]
    lapsed = runs[0].customer_id
    # They come back: nothing while the visit is recent, and a new lapse enters again.
    _order(session, tenant, "0912000041", now - timedelta(hours=1))
    assert _scan(database, tenant, now + timedelta(days=30))["no_visit"] == 0
    # (and the two others, whose last visits are now over 60 days old too)
    assert _scan(database, tenant, now + timedelta(days=61))["no_visit"] == 3
    again = [r for r in _runs(session, tenant) if r.customer_id == lapsed]
    assert len(again) == 2
    assert len({r.occurrence for r in again}) == 2


def test_the_scan_is_one_query_per_trigger_not_per_customer(
        database: Database, session: Session, tenant: Tenant) -> None:
    for trigger in journeys.SCANNED_TRIGGERS:
        _journey(database, tenant, trigger)
    now = utcnow()

    def add(count: int, start: int) -> None:
        for i in range(start, start + count):
            order = make_order(session, tenant, paid_at=(now - timedelta(days=61)).isoformat(),
                               identities=[{"kind": "phone", "value": f"09130{i:05d}"}])
            assert order.customer_id is not None
            customer = session.get_one(Customer, (tenant.id, order.customer_id))
            customer.birthday = date(1990, 1, 1)
            session.commit()

    add(2, 0)
    with _statements(database) as few:
        entered = _scan(database, tenant, now)
    assert entered["no_visit"] == 2
    add(12, 100)
    with _statements(database) as many:
        entered = _scan(database, tenant, now)
    assert entered["no_visit"] == 12
    assert len(many) == len(few)


# --- the worker and the CLI -------------------------------------------------------------------


def test_worker_scans_each_brand_at_its_local_hour(
        database: Database, session: Session, tenant: Tenant) -> None:
    _journey(database, tenant, "birthday")
    _customer(session, tenant, "0912000051", birthday=date(1991, 11, 25))
    at_scan_hour = datetime(2026, 11, 25, SCAN_HOUR, 20, tzinfo=UTC) - timedelta(hours=8)
    assert tenant.slug not in scan_where_due(now=at_scan_hour - timedelta(hours=1))
    assert tenant.slug in scan_where_due(now=at_scan_hour)
    assert len(_runs(session, tenant)) == 1
    assert tenant.slug in scan_where_due(now=at_scan_hour)  # again: nobody twice
    assert len(_runs(session, tenant)) == 1


def test_cli_scan(database: Database, session: Session, tenant: Tenant) -> None:
    _journey(database, tenant, "no_visit")
    _order(session, tenant, "0912000061", utcnow() - timedelta(days=75))
    try:
        result = CliRunner().invoke(cli_app, ["--database-url", database.url, "journeys",
                                              "scan", "--tenant", tenant.slug])
    finally:
        set_database(database)
    assert result.exit_code == 0, result.output
    assert f"{tenant.slug}: entered" in result.output
    assert "no_visit 1" in result.output
    assert len(_runs(session, tenant)) == 1


# --- low feedback and the staff task ----------------------------------------------------------


def test_low_feedback_enters_once_and_creates_a_staff_task(
        database: Database, session: Session, tenant: Tenant) -> None:
    store = make_store(session, tenant)
    _journey(database, tenant, "low_feedback",
             [{"kind": "task", "title": "致電 {name} 致歉"}])
    customer_id = _customer(session, tenant, "0912000071", name="王小明",
                            home_store_id=store.id)
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        low = submit_feedback(work, actor, customer_id=customer_id, rating=1, nps=None,
                              comment="太慢了", store_id=store.id, touchpoint_id=None).feedback
        submit_feedback(work, actor, customer_id=customer_id, rating=5, nps=10,
                        comment="", store_id=store.id, touchpoint_id=None)
        low_id = low.id
    runs = _runs(session, tenant)
    assert [(r.occurrence, r.status) for r in runs] == [
        (f"feedback:{low_id}", JourneyRunStatus.waiting)]
    with database.unit_of_work() as work:
        assert journeys.run_due(work, now=utcnow() + timedelta(seconds=1)) == 1
    run = _runs(session, tenant)[0]
    assert run.status is JourneyRunStatus.done
    assert [s["step"] for s in run.log] == ["enter", "condition", "action:task"]
    task = session.scalars(select(StaffTask).where(StaffTask.tenant_id == tenant.id)).one()
    assert (task.title, task.store_id, task.customer_id, task.status) == (
        "致電 王小明 致歉", store.id, customer_id, StaffTaskStatus.open)
    assert run.log[-1]["outcome"] == f"task {task.id}"
    with database.unit_of_work() as work:
        done = tasks.mark_done(work, actor, task.id)
        assert done.status is StaffTaskStatus.done
        first_done_at = done.done_at
    with database.unit_of_work() as work:  # a second click changes nothing
        assert tasks.mark_done(work, actor, task.id).done_at == first_done_at
    # A cashier of another store does not see the task.
    other = make_store(session, tenant)
    cashier = make_staff(session, tenant, Role.cashier, [other])
    seen = tasks.list_tasks(session, staff_actor(tenant.id, cashier.id, "c", Role.cashier,
                                                 frozenset({other.id})))
    assert seen == []


def test_the_worker_schedules_the_scan_hourly(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from omniloop.core.settings import get_settings
    from omniloop.messaging import worker

    monkeypatch.setenv("OMNILOOP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OMNILOOP_REDIS_URL", raising=False)
    get_settings.cache_clear()
    worker.reset()
    try:
        periodic = {task.name: task for task in worker.get_huey()._registry.periodic_tasks}
        hourly = periodic["journeys.scan"]
        at = [datetime(2026, 11, 25, hour, minute) for hour in (3, 4) for minute in (0, 25)]
        assert [hourly.validate_datetime(moment) for moment in at] == [False, True, False, True]
    finally:
        worker.reset()
        get_settings.cache_clear()
