"""Journeys: entered once per trigger occurrence (a retried order, a redelivered follow),
the wait, the condition checked when due, actions done and every step logged; erasure stops
what is still waiting."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.campaigns.models import Coupon
from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.customers.privacy import erase_customer
from omniloop.loyalty.models import EntryKind, PointsEntry
from omniloop.messaging import journeys
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import JourneyRun, JourneyRunStatus, OutboxMessage
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, Tenant
from tests.campaigns.factories import make_campaign
from tests.messaging.conftest import Clock, line_user, make_member
from tests.messaging.standins import LineStandIn
from tests.messaging.test_line_webhook import event, post
from tests.tenancy.factories import bearer, make_api_key, make_staff
from tests.web.admin_helpers import csrf_from, login


def _order(external_id: str, line_id: str) -> dict[str, object]:
    return {"external_id": external_id, "source": "pos",
            "paid_at": "2026-11-20T10:00:00+08:00", "currency": "TWD",
            "identities": [{"kind": "line", "value": line_id}],
            "lines": [{"sku": "LATTE", "quantity": 1, "unit_price_minor": 12000}]}


def _runs(session: Session, tenant: Tenant) -> list[JourneyRun]:
    session.rollback()
    return list(session.scalars(select(JourneyRun).where(JourneyRun.tenant_id == tenant.id)
                                .order_by(JourneyRun.created_at)))


def test_first_purchase_thanks_once_after_the_wait(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        line: LineStandIn, dispatcher: Dispatcher, clock: Clock) -> None:
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        journeys.from_template(work, actor, "thank_first_purchase")  # 60 min, LINE consent
        purchase = journeys.create_journey(work, actor, name="每次消費送點", trigger="purchase",
                                           actions=[{"kind": "points", "points": 10}])
        purchase_id = purchase.id
    member = make_member(session, tenant)
    key = bearer(make_api_key(session, tenant))
    for external_id in ("A-1", "A-1", "A-2"):  # a retried order, then a second one
        response = client.post("/api/v1/orders", headers=key,
                               json=_order(external_id, member.line_user))
        assert response.status_code in (200, 201), response.text
    runs = _runs(session, tenant)
    assert sorted(r.occurrence.split(":")[0] for r in runs) == [
        "first_purchase", "order", "order"]
    entered_at = utcnow()  # orders enter journeys at the real time
    with database.unit_of_work() as work:
        assert journeys.run_due(work, now=entered_at + timedelta(minutes=1)) == 2  # points
    thanks = [r for r in _runs(session, tenant) if r.journey_id != purchase_id]
    assert [r.status for r in thanks] == [JourneyRunStatus.waiting]
    with database.unit_of_work() as work:
        assert journeys.run_due(work, now=entered_at + timedelta(minutes=61)) == 1
    runs = _runs(session, tenant)
    assert {r.status for r in runs} == {JourneyRunStatus.done}
    thank_run = [r for r in runs if r.journey_id != purchase_id][0]
    assert [s["step"] for s in thank_run.log] == ["enter", "condition", "action:message"]
    assert dispatcher.drain().sent == 1
    assert "謝謝您的第一次光臨" in line.delivered_messages[0][1][0]["text"]
    session.rollback()
    given = session.scalars(select(PointsEntry.points).where(
        PointsEntry.tenant_id == tenant.id, PointsEntry.customer_id == member.id,
        PointsEntry.kind == EntryKind.adjust)).all()
    assert sorted(given) == [10, 10]  # one per order, not per retry


def test_condition_not_met_is_logged_and_follow_enters_once(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        clock: Clock) -> None:
    actor = system_actor(tenant.id)
    campaign = make_campaign(session, tenant)
    with database.unit_of_work() as work:
        journeys.create_journey(work, actor, name="VIP 歡迎券", trigger="line_follow",
                                condition={"tag": "vip"},
                                actions=[{"kind": "coupon", "campaign_id": campaign.id}])
        journeys.create_journey(work, actor, name="歡迎券", trigger="line_follow",
                                actions=[{"kind": "coupon", "campaign_id": campaign.id}])
    follow = event("follow", line_user())
    post(client, tenant, [follow])
    post(client, tenant, [follow])  # redelivered
    runs = _runs(session, tenant)
    assert len(runs) == 2
    with database.unit_of_work() as work:
        journeys.run_due(work, now=clock.now)
    by_name = {r.journey_id: r for r in _runs(session, tenant)}
    statuses = sorted(r.status.value for r in by_name.values())
    assert statuses == ["done", "skipped"]
    skipped = [r for r in by_name.values() if r.status is JourneyRunStatus.skipped][0]
    assert skipped.log[-1] == {"step": "condition", "outcome": "not met",
                               "at": skipped.log[-1]["at"]}
    session.rollback()
    assert len(session.scalars(select(Coupon).where(
        Coupon.tenant_id == tenant.id, Coupon.customer_id.is_not(None))).all()) == 1


def test_bad_journeys_are_refused(database: Database, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    for kwargs in ({"trigger": "anniversary", "actions": [{"kind": "points", "points": 1}]},
                   {"trigger": "purchase", "actions": []},
                   {"trigger": "purchase", "actions": [{"kind": "points", "points": -5}]},
                   {"trigger": "purchase", "actions": [{"kind": "message", "channel": "line",
                                                        "text": ""}]},
                   {"trigger": "purchase", "condition": {"age": 3},
                    "actions": [{"kind": "points", "points": 1}]},
                   {"trigger": "no_visit", "actions": [{"kind": "task", "title": " "}]},
                   {"trigger": "birthday", "actions": [{"kind": "coupon",
                                                        "campaign_id": "0" * 26}]},
                   {"trigger": "birthday", "actions": [{"kind": "message", "channel": "email",
                                                        "text": "hi"}]}):
        with pytest.raises(journeys.JourneyInvalid), database.unit_of_work() as work:
            journeys.create_journey(work, actor, name="x", **kwargs)


def test_erasure_stops_waiting_runs_and_blanks_messages(
        database: Database, session: Session, tenant: Tenant, clock: Clock) -> None:
    from omniloop.messaging.models import OutboxChannel, Purpose
    from omniloop.messaging.service import message_customer

    actor = system_actor(tenant.id)
    member = make_member(session, tenant)
    with database.unit_of_work() as work:
        journey = journeys.create_journey(work, actor, name="w", trigger="purchase",
                                          wait_minutes=30,
                                          actions=[{"kind": "points", "points": 1}])
        journeys.enter(work, tenant.id, "purchase", member.id, "order:x", now=clock.now)
        message_customer(work, actor, member.id, OutboxChannel.line, Purpose.marketing,
                         "m", {"text": "嗨"})
        assert journey.id
    with database.unit_of_work() as work:
        erase_customer(work, actor, member.id, "asked to be forgotten")
    runs = _runs(session, tenant)
    assert [r.status for r in runs] == [JourneyRunStatus.skipped]
    row = session.scalar(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant.id))
    assert row is not None
    assert row.recipient == "erased"
    assert row.payload == {}
    assert row.reason == "erased"
    with database.unit_of_work() as work:
        assert journeys.run_due(work, now=clock.now + timedelta(hours=1)) == 0


def test_journeys_admin(client: TestClient, session: Session, tenant: Tenant) -> None:
    staff = make_staff(session, tenant, Role.marketer)
    assert login(client, staff.email, brand=tenant.slug).status_code == 303
    page = client.get("/admin/messaging/journeys")
    assert page.status_code == 200
    created = client.post("/admin/messaging/journeys/from-template", data={
        "csrf_token": csrf_from(page.text), "template": "welcome_points"},
        follow_redirects=False)
    assert created.status_code == 303
    listed = client.get("/admin/messaging/journeys")
    assert "LINE 新好友歡迎點數" in listed.text
    assert 'data-runs="done"' in listed.text


def test_journeys_api(client: TestClient, session: Session, tenant: Tenant) -> None:
    key = bearer(make_api_key(session, tenant))
    body = {"name": "消費後送點", "trigger": "purchase", "wait_minutes": 0,
            "actions": [{"kind": "points", "points": 5}]}
    created = client.post("/api/v1/journeys", headers=key, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["active"] is True
    bad = client.post("/api/v1/journeys", headers=key, json=body | {"trigger": "anniversary"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "journey_invalid"
    listed = client.get("/api/v1/journeys", headers=key).json()
    assert [(j["name"], j["runs"]["done"]) for j in listed] == [("消費後送點", 0)]
