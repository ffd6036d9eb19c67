"""Referral expiry: the periodic job (worker and CLI) moves pending referrals past their
window to expired, once; a purchase after the window never qualifies them; the admin and
the loop report show pending and expired as they are."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from omniloop.cli import app
from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session, set_database
from omniloop.loops.jobs import expire_everywhere, expire_referrals
from omniloop.loops.models import Referral, ReferralStatus
from omniloop.loops.referrals import code_for, refer
from omniloop.loops.report import loop_report
from omniloop.loyalty.ledger import balance_of
from omniloop.messaging import worker
from omniloop.orders.schemas import OrderIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.customers.factories import make_customer
from tests.loops.factories import Shop, make_shop
from tests.tenancy.factories import fresh, make_staff
from tests.web.admin_helpers import login


def _refer(database: Database, shop: Shop, member: str, phone: str,
           at: datetime) -> str:
    actor = system_actor(shop.tenant.id)
    with database.unit_of_work() as work:
        code = code_for(work, actor, member)
    with database.unit_of_work() as work:
        referral_id = refer(work, actor, code, phone, None).referral.id
    with database.unit_of_work() as work:  # as if signed up at `at` (the campaign is new)
        work.execute(update(Referral).where(Referral.id == referral_id).values(
            created_at=at, qualify_by=at + timedelta(days=7)))
    return referral_id


def _status(session: Session, shop: Shop, referral_id: str) -> ReferralStatus:
    fresh(session)
    referral = session.get(Referral, (shop.tenant.id, referral_id))
    assert referral is not None
    return referral.status


def _buy(database: Database, shop: Shop, friend: str, key: str, at: datetime) -> None:
    with database.unit_of_work() as work:
        ingest_order(work, system_actor(shop.tenant.id), OrderIn.model_validate({
            "external_id": key, "source": "pos", "store_id": shop.store.id,
            "customer_id": friend,
            "lines": [{"sku": "LATTE", "name": "拿鐵", "quantity": 1, "unit_price_minor": 100}],
            "paid_at": at.isoformat()}))


@pytest.fixture
def shop(session: Session) -> Shop:
    return make_shop(session, qualify_days=7)


def test_the_job_expires_what_the_window_left_pending_once(
        database: Database, session: Session, shop: Shop) -> None:
    now = utcnow()
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    old = _refer(database, shop, member, "+886911000001", now - timedelta(days=8))
    fresh_one = _refer(database, shop, member, "+886911000002", now - timedelta(days=2))
    with database.unit_of_work() as work:
        assert expire_referrals(work, shop.tenant.id, now=now) == 1
    with database.unit_of_work() as work:
        assert expire_referrals(work, shop.tenant.id, now=now) == 0  # idempotent
    assert _status(session, shop, old) == ReferralStatus.expired
    assert _status(session, shop, fresh_one) == ReferralStatus.pending
    # At the window's last moment it is still open (the rule `qualify` applies too).
    referral = session.get(Referral, (shop.tenant.id, fresh_one))
    assert referral is not None
    with database.unit_of_work() as work:
        assert expire_referrals(work, shop.tenant.id, now=referral.qualify_by) == 0
        assert expire_referrals(work, shop.tenant.id,
                                now=referral.qualify_by + timedelta(seconds=1)) == 1


def test_a_purchase_after_expiry_does_not_qualify_one_within_the_window_does(
        database: Database, session: Session, shop: Shop) -> None:
    now = utcnow()
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    late = _refer(database, shop, member, "+886911000001", now - timedelta(days=9))
    synced = _refer(database, shop, member, "+886911000002", now - timedelta(days=9))
    assert expire_everywhere(now=now)[shop.tenant.slug] == 2
    fresh(session)
    friends = {r.id: r.friend_id for r in session.query(Referral)}
    # A purchase now, after the window: nothing changes, nobody is rewarded.
    _buy(database, shop, friends[late], "LATE", now)
    assert _status(session, shop, late) == ReferralStatus.expired
    assert balance_of(session, shop.tenant.id, member) == 0
    # A purchase made within the window that the POS sends only now (it was offline):
    # the window is about when the friend bought, so it qualifies, and rewards once.
    _buy(database, shop, friends[synced], "OFFLINE", now - timedelta(days=3))
    assert _status(session, shop, synced) == ReferralStatus.qualified
    assert balance_of(session, shop.tenant.id, member) == 100
    assert expire_everywhere(now=now + timedelta(days=30))[shop.tenant.slug] == 0


def test_cli_and_worker_run_it(database: Database, session: Session, shop: Shop) -> None:
    now = utcnow()
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    one = _refer(database, shop, member, "+886911000001", now - timedelta(days=8))
    try:
        result = CliRunner().invoke(app, ["--database-url", database.url, "loops",
                                          "expire-referrals", "--tenant", shop.tenant.slug])
    finally:
        set_database(database)
    assert result.exit_code == 0, result.output
    assert f"{shop.tenant.slug}: 1 referrals expired" in result.stdout
    assert _status(session, shop, one) == ReferralStatus.expired
    bad = CliRunner().invoke(app, ["--database-url", database.url, "loops",
                                   "expire-referrals", "--tenant", "no-such-brand"])
    set_database(database)
    assert bad.exit_code == 2
    assert "error: tenant_not_found" in bad.stderr
    # The worker registers it as an hourly periodic task.
    worker.reset()
    try:
        names = {task().name for task in worker.get_huey()._registry._periodic_tasks}
    finally:
        worker.reset()
    assert "loops.expire_referrals" in names


def test_admin_and_report_show_pending_and_expired(
        client: TestClient, database: Database, session: Session, shop: Shop) -> None:
    now = utcnow()
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    for phone, days in (("+886911000001", 9), ("+886911000002", 8), ("+886911000003", 1)):
        _refer(database, shop, member, phone, now - timedelta(days=days))
    with database.unit_of_work() as work:  # one marked by the job, one not yet
        work.execute(update(Referral).where(Referral.created_at < now - timedelta(days=8, hours=12))
                     .values(status=ReferralStatus.expired))
    # The member scanned a code, so they are in the report's cohort.
    from omniloop.customers.events import record_event

    with database.unit_of_work() as work:
        record_event(work, system_actor(shop.tenant.id), client_event_id="scan-1",
                     type="qr_scan", channel="offline", source="touchpoint",
                     customer_id=member, store_id=shop.store.id,
                     occurred_at=now - timedelta(days=10), properties={})
    fresh(session)
    report = loop_report(session, system_actor(shop.tenant.id), now - timedelta(days=11),
                         now + timedelta(days=1))
    figures = report.overall
    assert (figures.referred, figures.referred_pending, figures.referred_expired,
            figures.qualified_now) == (3, 1, 2, 0)
    session.rollback()
    owner = make_staff(session, shop.tenant, Role.owner)
    login(client, owner.email)
    page = client.get("/admin/loops/referrals")
    assert page.text.count('data-status="expired"') == 2
    assert page.text.count('data-status="pending"') == 1
    shown = client.get("/admin/loops/report", params={
        "start": (now - timedelta(days=11)).date().isoformat(),
        "end": now.date().isoformat()})
    assert 'data-standing="expired">已過期 2' in shown.text
    assert 'data-standing="pending">待完成 1' in shown.text
    from tests.tenancy.factories import bearer, make_api_key

    api = client.get("/api/v1/loops/report", headers=bearer(
        make_api_key(session, shop.tenant, ["admin"])), params={
        "start": (now - timedelta(days=11)).isoformat(),
        "end": (now + timedelta(days=1)).isoformat()})
    assert api.status_code == 200, api.text
    overall = api.json()["overall"]
    assert (overall["referred_pending"], overall["referred_expired"],
            overall["referred_qualified"]) == (1, 2, 0)
