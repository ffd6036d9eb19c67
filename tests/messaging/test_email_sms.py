"""E-mail over SMTP (a real aiosmtpd on loopback) and SMS through an HTTP provider stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.messaging import channels
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.errors import ChannelSettingsInvalid
from omniloop.messaging.models import ChannelConfig, OutboxChannel, OutboxMessage, Purpose
from omniloop.messaging.senders import EmailSender, SmtpConfig
from omniloop.messaging.service import message_customer
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.messaging.conftest import Clock, make_member, setup_email
from tests.messaging.standins import SmsStandIn, SmtpStandIn

SMS_TOKEN = "sms-provider-token"


@pytest.fixture
def sms() -> Iterator[SmsStandIn]:
    with SmsStandIn(token=SMS_TOKEN) as server:
        yield server


def test_marketing_email_has_html_text_and_one_click_unsubscribe(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        smtp: SmtpStandIn, dispatcher: Dispatcher) -> None:
    setup_email(database, tenant, smtp)
    member = make_member(session, tenant, email="Mei@Example.com")
    actor = system_actor(tenant.id)
    content = {"subject": "秋季新品上市", "text": "新品 9 折，限時一週。",
               "html": "<p>新品 <b>9 折</b>，限時一週。</p>"}
    with database.unit_of_work() as work:
        message_customer(work, actor, member.id, OutboxChannel.email, Purpose.marketing,
                         "autumn", content)
    assert dispatcher.drain().sent == 1
    [mail] = smtp.mails
    assert mail["To"] == "mei@example.com"
    assert mail["From"] == "news@bean.example"
    assert mail["Subject"] == "秋季新品上市"
    types = sorted(part.get_content_type() for part in mail.walk() if not part.is_multipart())
    assert types == ["text/html", "text/plain"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    assert link.startswith("http://testserver/u/")
    session.rollback()
    row = session.scalar(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant.id))
    assert row is not None
    assert mail["Message-ID"] == f"<{row.id}@bean.example>"

    # The mail client's one-click POST unsubscribes; the next marketing mail is skipped.
    assert client.post(link.removeprefix("http://testserver"),
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with database.unit_of_work() as work:
        message_customer(work, actor, member.id, OutboxChannel.email, Purpose.marketing,
                         "winter", content)
    report = dispatcher.drain()
    assert (report.sent, report.skipped) == (0, 1)
    assert len(smtp.mails) == 1


def test_a_resent_mail_keeps_its_message_id(smtp: SmtpStandIn) -> None:
    sender = EmailSender(SmtpConfig(host="127.0.0.1", port=smtp.port,
                                    from_address="a@bean.example", security="none"))
    payload = {"subject": "s", "text": "t"}
    assert sender.send("01ABC", "x@example.com", payload, {}).kind == "sent"
    assert sender.send("01ABC", "x@example.com", payload, {}).kind == "sent"
    assert smtp.handler.received == 2
    assert len(smtp.mails) == 1


def test_smtp_down_is_retried(database: Database, session: Session, tenant: Tenant,
                              smtp: SmtpStandIn, dispatcher: Dispatcher, clock: Clock) -> None:
    setup_email(database, tenant, smtp)
    member = make_member(session, tenant, email="a@example.com")
    with database.unit_of_work() as work:
        channels.save_channel(work, system_actor(tenant.id), OutboxChannel.email, {
            "host": "127.0.0.1", "port": "1", "from_address": "news@bean.example",
            "security": "none"}, {})
        message_customer(work, system_actor(tenant.id), member.id, OutboxChannel.email,
                         Purpose.transactional, "receipt", {"subject": "收據", "text": "謝謝"})
    assert dispatcher.run_once().retried == 1
    setup_email(database, tenant, smtp)
    clock.advance(minutes=1)
    assert dispatcher.run_once().sent == 1
    assert len(smtp.mails) == 1


def test_sms_through_the_provider(database: Database, session: Session, tenant: Tenant,
                                  sms: SmsStandIn, dispatcher: Dispatcher,
                                  clock: Clock) -> None:
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        channels.save_channel(work, actor, OutboxChannel.sms, {"url": sms.url + "/send"},
                              {"token": SMS_TOKEN})
    member = make_member(session, tenant, phone="0912-345-678")
    with database.unit_of_work() as work:
        message_customer(work, actor, member.id, OutboxChannel.sms, Purpose.transactional,
                         "pickup", {"text": "您的餐點已完成"})
    sms.fail_next = [503]
    assert dispatcher.run_once().retried == 1
    clock.advance(minutes=1)
    assert dispatcher.run_once().sent == 1
    assert sms.delivered == [{"to": "+886912345678", "text": "您的餐點已完成",
                              "reference": sms.delivered[0]["reference"]}]
    # A wrong token is refused for good: a dead letter at once.
    with database.unit_of_work() as work:
        channels.save_channel(work, actor, OutboxChannel.sms, {"url": sms.url + "/send"},
                              {"token": "wrong"})
        message_customer(work, actor, member.id, OutboxChannel.sms, Purpose.transactional,
                         "pickup-2", {"text": "again"})
    assert dispatcher.run_once().dead == 1


def test_channel_settings_are_checked_and_secrets_encrypted(
        database: Database, session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    with pytest.raises(ChannelSettingsInvalid), database.unit_of_work() as work:
        channels.save_channel(work, actor, OutboxChannel.sms, {"url": "ftp://x"}, {"token": "t"})
    with pytest.raises(ChannelSettingsInvalid), database.unit_of_work() as work:
        channels.save_channel(work, actor, OutboxChannel.email, {
            "host": "h", "port": "99999", "from_address": "a@b.c", "security": "none"}, {})
    with database.unit_of_work() as work:
        channels.save_channel(work, actor, OutboxChannel.sms, {"url": "https://sms.example"},
                              {"token": "s3cret-token"})
    session.rollback()
    row = session.get_one(ChannelConfig, (tenant.id, OutboxChannel.sms))
    assert "s3cret-token" not in row.secrets
    # A blank secret keeps the stored one.
    with database.unit_of_work() as work:
        channels.save_channel(work, actor, OutboxChannel.sms, {"url": "https://sms2.example"},
                              {"token": ""})
    with database.unit_of_work(write=False) as work:
        loaded = channels.load_channel(work, tenant.id, OutboxChannel.sms)
    assert loaded.secrets["token"] == "s3cret-token"
    assert loaded.settings["url"] == "https://sms2.example"
