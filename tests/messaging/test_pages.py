"""The messaging admin: a dead LINE letter shows and is replayed; a send with preview; channel
settings; webhook endpoints; zh-TW and English; marketers may, cashiers may not."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import (
    ChannelConfig,
    MessageSend,
    OutboxChannel,
    OutboxMessage,
    OutboxStatus,
    Purpose,
)
from omniloop.messaging.service import message_customer
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, Tenant
from tests.messaging.conftest import Clock, make_member
from tests.messaging.standins import LineStandIn
from tests.tenancy.factories import make_staff, make_store
from tests.web.admin_helpers import csrf_from, login


def _sign_in(client: TestClient, session: Session, tenant: Tenant,
             role: Role = Role.marketer) -> None:
    stores = [make_store(session, tenant)] if role is Role.cashier else None
    staff = make_staff(session, tenant, role, stores)
    assert login(client, staff.email, brand=tenant.slug).status_code == 303


def test_a_dead_line_letter_is_visible_and_replayed_from_the_admin(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        line: LineStandIn, dispatcher: Dispatcher, clock: Clock) -> None:
    member = make_member(session, tenant)
    with database.unit_of_work() as work:
        message_customer(work, system_actor(tenant.id), member.id, OutboxChannel.line,
                         Purpose.transactional, "x", {"text": "您的訂單已出貨"})
    line.always = 429
    for _ in range(4):
        dispatcher.run_once()
        clock.advance(hours=2)
    _sign_in(client, session, tenant)
    overview = client.get("/admin/messaging")
    assert overview.status_code == 200
    assert 'data-channel="line"' in overview.text
    page = client.get("/admin/messaging/messages?state=dead")
    assert page.status_code == 200
    assert "429" in page.text
    assert 'data-status="dead"' in page.text
    session.rollback()
    dead = session.scalar(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant.id))
    assert dead is not None
    assert dead.status is OutboxStatus.dead
    replayed = client.post("/admin/messaging/messages/replay", data={
        "csrf_token": csrf_from(page.text), "ids": [dead.id]}, follow_redirects=False)
    assert replayed.status_code == 303
    line.always = None
    assert dispatcher.drain().sent == 1
    assert line.deliveries[member.line_user] == 1


def test_new_send_with_preview_then_send(client: TestClient, session: Session, tenant: Tenant,
                                         line: LineStandIn, dispatcher: Dispatcher) -> None:
    members = [make_member(session, tenant) for _ in range(3)]
    _sign_in(client, session, tenant)
    form = client.get("/admin/messaging/sends/new")
    assert form.status_code == 200
    data = {"csrf_token": csrf_from(form.text), "name": "週末快閃", "channel": "line",
            "audience": "channel", "text": "{name} 您好，週末全品項 85 折"}
    preview = client.post("/admin/messaging/sends/new", data=data | {"action": "preview"})
    assert preview.status_code == 200
    assert "週末全品項 85 折" in preview.text
    assert "3" in preview.text
    session.rollback()
    assert session.scalars(select(MessageSend)).all() == []  # a preview sends nothing
    bad = client.post("/admin/messaging/sends/new", data=data | {"text": "{oops}"})
    assert bad.status_code == 422
    assert "oops" in bad.text
    sent = client.post("/admin/messaging/sends/new", data=data | {"action": "send"},
                       follow_redirects=False)
    assert sent.status_code == 303
    detail = client.get(sent.headers["location"])
    assert detail.status_code == 200
    assert "週末快閃" in detail.text
    assert dispatcher.drain().sent == 3
    assert line.delivered_to() == {m.line_user for m in members}


def test_channel_settings_and_webhooks_pages(client: TestClient, session: Session,
                                             tenant: Tenant) -> None:
    staff = make_staff(session, tenant, Role.owner)
    assert login(client, staff.email, brand=tenant.slug).status_code == 303
    page = client.get("/admin/messaging/settings")
    assert page.status_code == 200
    assert f"/webhooks/line/{tenant.slug}" in page.text
    token = csrf_from(page.text)
    saved = client.post("/admin/messaging/settings/channel/sms", data={
        "csrf_token": token, "url": "https://sms.example/send", "token": "tok",
        "enabled": "on"}, follow_redirects=False)
    assert saved.status_code == 303
    bad = client.post("/admin/messaging/settings/channel/sms", data={
        "csrf_token": token, "url": "nope", "token": "tok", "enabled": "on"})
    assert bad.status_code == 422
    rules = client.post("/admin/messaging/settings/rules", data={
        "csrf_token": token, "quiet_start": "25:00", "quiet_end": "09:00", "weekly_cap": "3"})
    assert rules.status_code == 422
    session.rollback()
    assert session.get_one(ChannelConfig, (tenant.id, OutboxChannel.sms)).settings["url"] == \
        "https://sms.example/send"
    hooks = client.get("/admin/messaging/webhooks")
    created = client.post("/admin/messaging/webhooks", data={
        "csrf_token": csrf_from(hooks.text), "url": "https://erp.example/hooks",
        "event_types": ["order.recorded", "line.followed"]})
    assert created.status_code == 201
    assert "whsec_" in created.text
    english = client.get("/admin/messaging/settings?lang=en")
    assert "Sending rules" in english.text
    chinese = client.get("/admin/messaging/settings?lang=zh_TW")
    assert "傳送規則" in chinese.text


def test_cashiers_cannot_open_messaging(client: TestClient, session: Session,
                                        tenant: Tenant) -> None:
    _sign_in(client, session, tenant, Role.cashier)
    assert client.get("/admin/messaging").status_code == 403
