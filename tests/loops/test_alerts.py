"""Low-score alerts: the store's managers get an e-mail through the outbox, delivered by the
worker's dispatch to a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.core.ratelimit import MemoryRateLimiter
from omniloop.loops.alerts import recipients
from omniloop.loops.feedback import issue_receipt, submit_feedback
from omniloop.loops.models import Purpose, RecoveryTask
from omniloop.messaging import channels, outbox
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import OutboxChannel, OutboxMessage, OutboxStatus
from omniloop.messaging.models import Purpose as MessagePurpose
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.customers.factories import make_customer
from tests.loops.factories import form_token_of, make_shop, make_touchpoint
from tests.messaging.conftest import dispatch_config
from tests.messaging.standins import SmtpStandIn
from tests.orders.factories import make_order
from tests.tenancy.factories import fresh, make_staff, make_store


@pytest.fixture
def smtp() -> Iterator[SmtpStandIn]:
    with SmtpStandIn() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_wakeups(app: object) -> Iterator[None]:
    """The test runs the dispatch itself."""
    outbox.set_waker(None)
    yield
    outbox.set_waker(None)


def _text(mail: Message) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def _quiet_hour() -> datetime:
    """23:00 in Taipei, inside the default quiet hours (21:00–09:00), a day ahead."""
    return (datetime.now(UTC) + timedelta(days=1)).replace(hour=15, minute=0, second=0,
                                                           microsecond=0)


def test_low_score_mails_the_store_managers_through_the_outbox(
        client: TestClient, database: Database, session: Session, smtp: SmtpStandIn) -> None:
    shop = make_shop(session)
    other_store = make_store(session, shop.tenant, code="TPE02", name="大安店")
    with database.unit_of_work() as work:
        channels.save_channel(work, system_actor(shop.tenant.id), OutboxChannel.email, {
            "host": "127.0.0.1", "port": str(smtp.port), "from_address": "alerts@bean.example",
            "security": "none", "username": ""}, {"password": ""})
    manager = make_staff(session, shop.tenant, Role.store_manager, [shop.store],
                         email="mgr@bean.example")
    make_staff(session, shop.tenant, Role.cashier, [shop.store], email="cashier@bean.example")
    make_staff(session, shop.tenant, Role.store_manager, [other_store],
               email="other-mgr@bean.example")
    make_staff(session, shop.tenant, Role.owner, email="owner@bean.example")
    receipt_tp = make_touchpoint(session, shop, Purpose.feedback, number=None,
                                 target_url="https://maps.example/review")
    order = make_order(session, shop.tenant, store_id=shop.store.id)
    fresh(session)
    issued = issue_receipt(session, system_actor(shop.tenant.id), order.id, "小王")
    session.commit()
    # The person leaves a low score through the receipt QR, as in the store.
    page = client.get(f"/t/{receipt_tp.code}?r={issued.token}")
    answer = client.post(f"/t/{receipt_tp.code}", data={
        "form_token": form_token_of(page.text), "phone": "0912 345 678", "r": issued.token,
        "rating": "1", "nps": "2", "comment": "湯是冷的，等了 40 分鐘"}, follow_redirects=False)
    assert answer.status_code == 303
    fresh(session)
    (task,) = session.scalars(select(RecoveryTask))
    (message,) = session.scalars(select(OutboxMessage))
    assert (message.channel, message.purpose, message.recipient, message.customer_id,
            message.dedup_key) == (OutboxChannel.email, MessagePurpose.transactional,
                                   "mgr@bean.example", None,
                                   f"loops:alert:{task.id}:{manager.id}")
    session.rollback()
    # The worker's dispatch, in the middle of quiet hours: an alert is not held by them.
    dispatcher = Dispatcher(database, dispatch_config("http://127.0.0.1:9"),
                            clock=_quiet_hour, limiter=MemoryRateLimiter())
    try:
        report = dispatcher.drain()
    finally:
        dispatcher.close()
    assert (report.sent, report.deferred, report.skipped) == (1, 0, 0)
    (mail,) = smtp.mails
    assert mail["To"] == "mgr@bean.example"
    assert mail["From"] == "alerts@bean.example"
    assert mail["Subject"] == "信義店 收到低分：1/5"
    body = _text(mail)
    for expected in ("評分：1/5", "推薦分數（NPS）：2/10", "意見：湯是冷的，等了 40 分鐘",
                     "門市：信義店", "服務人員（收據）：小王",
                     f"/admin/loops/feedback#task-{task.id}"):
        assert expected in body, expected
    assert "List-Unsubscribe" not in mail  # not marketing
    fresh(session)
    assert session.scalar(select(OutboxMessage.status)) == OutboxStatus.sent
    # The link leads to the task in the admin.
    from tests.web.admin_helpers import login

    login(client, "mgr@bean.example")
    listed = client.get("/admin/loops/feedback")
    assert f'id="task-{task.id}"' in listed.text


def test_owners_when_the_store_has_no_manager_in_their_language_once(
        database: Database, session: Session, smtp: SmtpStandIn) -> None:
    shop = make_shop(session)
    with database.unit_of_work() as work:
        channels.save_channel(work, system_actor(shop.tenant.id), OutboxChannel.email, {
            "host": "127.0.0.1", "port": str(smtp.port), "from_address": "alerts@bean.example",
            "security": "none", "username": ""}, {"password": ""})
    owner = make_staff(session, shop.tenant, Role.owner, email="owner@bean.example")
    make_staff(session, shop.tenant, Role.marketer, email="mkt@bean.example")
    fresh(session)
    from omniloop.tenancy.models import StaffUser

    row = session.get(StaffUser, (shop.tenant.id, owner.id))
    assert row is not None
    row.locale = "en"
    customer = make_customer(session, shop.tenant, ("phone", "0912345678"))
    fresh(session)
    assert [s.email for s in recipients(session, shop.tenant.id, shop.store.id)] == [
        "owner@bean.example"]
    actor = system_actor(shop.tenant.id)
    result = submit_feedback(session, actor, customer_id=customer, rating=4, nps=5,
                             comment="", store_id=shop.store.id, touchpoint_id=None)
    assert result.task is not None  # NPS 5 is at or below the mark (6)
    # Enqueued again for the same task (a retry): one message.
    from omniloop.loops.alerts import alert_low_score

    assert alert_low_score(session, actor, result.task, result.feedback) == []
    session.commit()
    dispatcher = Dispatcher(database, dispatch_config("http://127.0.0.1:9"),
                            limiter=MemoryRateLimiter())
    try:
        assert dispatcher.drain().sent == 1
    finally:
        dispatcher.close()
    (mail,) = smtp.mails
    assert mail["To"] == "owner@bean.example"
    assert mail["Subject"] == "Low score at 信義店: 4/5"
    body = _text(mail)
    assert "Recommendation score (NPS): 5/10" in body
    assert "Comment: none" in body
    assert "Served by" not in body


def test_no_email_channel_no_alert_and_high_scores_none(session: Session) -> None:
    shop = make_shop(session)
    make_staff(session, shop.tenant, Role.owner)
    customer = make_customer(session, shop.tenant, ("phone", "0912345678"))
    fresh(session)
    actor = system_actor(shop.tenant.id)
    low = submit_feedback(session, actor, customer_id=customer, rating=1, nps=None,
                          comment="", store_id=shop.store.id, touchpoint_id=None)
    assert low.task is not None  # the task list is the alert
    assert session.scalar(select(OutboxMessage.id)) is None
