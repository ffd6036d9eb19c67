"""Open and click tracking of marketing e-mails, through a real SMTP server and the routes."""

from __future__ import annotations

import re
import threading
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.customers.models import Event
from omniloop.messaging import sends, tracking
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import OutboxChannel, OutboxMessage, Purpose
from omniloop.messaging.service import message_customer
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, Tenant
from tests.messaging.conftest import make_member, setup_email
from tests.messaging.standins import SmtpStandIn
from tests.tenancy.factories import fresh, make_staff
from tests.web.admin_helpers import login

HTML = ('<html><body><p>秋季新品 <a href="https://shop.example/new?a=1&amp;b=2">看新品</a>'
        ' 或 <a href=\'https://shop.example/stores\'>找門市</a>'
        ' · <a href="mailto:hi@bean.example">來信</a></p></body></html>')


def _html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _send(database: Database, tenant: Tenant, member_id: str, purpose: Purpose,
          key: str) -> None:
    with database.unit_of_work() as work:
        message_customer(work, system_actor(tenant.id), member_id, OutboxChannel.email,
                         purpose, key, {"subject": "秋季新品", "text": "看新品", "html": HTML})


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


def _clicks(body: str) -> list[str]:
    """The tracked links of a mail's HTML, as paths for the test client."""
    return [_path(u) for u in re.findall(r'href=["\'](http://testserver/m/c/[^"\']+)["\']',
                                         body)]


def _pixel(body: str) -> str:
    [url] = re.findall(r'src="(http://testserver/m/o/[^"]+\.gif)"', body)
    return _path(url)


def test_opens_and_clicks_are_counted_once_per_message_and_lead_to_the_links(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        smtp: SmtpStandIn, dispatcher: Dispatcher) -> None:
    setup_email(database, tenant, smtp)
    member = make_member(session, tenant, email="mei@example.com")
    _send(database, tenant, member.id, Purpose.marketing, "autumn")
    assert dispatcher.drain().sent == 1
    body = _html_of(smtp.mails[0])
    clicks = _clicks(body)
    pixel = _pixel(body)
    assert len(clicks) == 2  # the two web links; mailto: is left alone
    assert "mailto:hi@bean.example" in body
    assert "shop.example" not in body  # no link goes out untracked

    opened = client.get(pixel)
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "image/gif"
    assert opened.content == tracking.PIXEL
    assert client.get(pixel).status_code == 200  # opened again: counted once
    first = client.get(clicks[0], follow_redirects=False)
    assert first.status_code == 302
    assert first.headers["location"] == "https://shop.example/new?a=1&b=2"
    second = client.get(clicks[1], follow_redirects=False)
    assert second.headers["location"] == "https://shop.example/stores"
    client.get(clicks[0], follow_redirects=False)

    fresh(session)
    row = session.scalars(select(OutboxMessage)).one()
    assert row.opened_at is not None
    assert row.clicked_at is not None
    assert row.clicks == 3
    kinds = sorted(e.type for e in session.scalars(select(Event).where(
        Event.type.in_(["message_opened", "message_clicked"]))))
    assert kinds == ["message_clicked", "message_clicked", "message_opened"]
    clicked = session.scalars(select(Event).where(Event.type == "message_clicked")).all()
    assert {e.properties["url"] for e in clicked} == {"https://shop.example/new?a=1&b=2",
                                                     "https://shop.example/stores"}
    assert all(e.customer_id == member.id for e in clicked)


def test_a_send_shows_its_opens_and_clicks(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        smtp: SmtpStandIn, dispatcher: Dispatcher) -> None:
    setup_email(database, tenant, smtp)
    members = [make_member(session, tenant, email=f"m{i}@example.com") for i in range(4)]
    with database.unit_of_work() as work:
        send = sends.create_send(work, system_actor(tenant.id), name="秋季新品",
                                 channel=OutboxChannel.email, audience={"kind": "channel"},
                                 content={"subject": "秋季新品", "text": "看新品", "html": HTML})
        send_id = send.id
    dispatcher.drain()
    assert len(smtp.mails) == len(members)
    for index, mail in enumerate(smtp.mails[:2]):
        body = _html_of(mail)
        client.get(_pixel(body))
        if index == 0:
            client.get(_clicks(body)[0], follow_redirects=False)
    staff = make_staff(session, tenant, Role.marketer)
    assert login(client, staff.email, brand=tenant.slug).status_code == 303
    page = client.get(f"/admin/messaging/sends/{send_id}?lang=en")
    assert 'data-opened="2"' in page.text
    assert 'data-clicked="1"' in page.text
    assert "(50 %)" in page.text
    assert "(25 %)" in page.text


def test_forged_altered_or_erased_links_lead_nowhere(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        smtp: SmtpStandIn, dispatcher: Dispatcher) -> None:
    from omniloop.customers.privacy import erase_customer

    setup_email(database, tenant, smtp)
    member = make_member(session, tenant, email="mei@example.com")
    _send(database, tenant, member.id, Purpose.marketing, "autumn")
    dispatcher.drain()
    body = _html_of(smtp.mails[0])
    link = _clicks(body)[0]
    altered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    assert client.get(altered, follow_redirects=False).status_code == 404
    forged = tracking._serializer().dumps(["c", tenant.id, "01NOSUCHMESSAGE00000000000", 0])
    assert client.get(f"/m/c/{forged}", follow_redirects=False).status_code == 404
    assert client.get("/m/c/nonsense", follow_redirects=False).status_code == 404
    # An image request never fails: the mail client shows nothing either way.
    assert client.get("/m/o/nonsense.gif").status_code == 200
    import omniloop.messaging.privacy  # noqa: F401  (registered at app start-up)

    with database.unit_of_work() as work:
        erase_customer(work, system_actor(tenant.id), member.id, "asked to be forgotten")
    gone = client.get(link, follow_redirects=False)
    assert gone.status_code == 404
    assert "not in use" in client.get(link + "?lang=en").text


@pytest.mark.parametrize("purpose", [Purpose.transactional])
def test_transactional_mail_is_not_tracked(
        database: Database, session: Session, tenant: Tenant, smtp: SmtpStandIn,
        dispatcher: Dispatcher, purpose: Purpose) -> None:
    setup_email(database, tenant, smtp)
    member = make_member(session, tenant, email="mei@example.com")
    _send(database, tenant, member.id, purpose, "receipt")
    dispatcher.drain()
    body = _html_of(smtp.mails[0])
    assert "/m/o/" not in body
    assert 'href="https://shop.example/new?a=1&amp;b=2"' in body


def test_concurrent_clicks_all_count(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        smtp: SmtpStandIn, dispatcher: Dispatcher) -> None:
    setup_email(database, tenant, smtp)
    member = make_member(session, tenant, email="mei@example.com")
    _send(database, tenant, member.id, Purpose.marketing, "autumn")
    dispatcher.drain()
    link = _clicks(_html_of(smtp.mails[0]))[0]
    answers: list[int] = []

    def click() -> None:
        with TestClient(client.app) as browser:
            answers.append(browser.get(link, follow_redirects=False).status_code)

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [302] * 8
    fresh(session)
    row = session.scalars(select(OutboxMessage)).one()
    assert row.clicks == 8
    assert len(session.scalars(select(Event).where(Event.type == "message_clicked")).all()) == 1
    assert len(session.scalars(select(Event).where(Event.type == "message_opened")).all()) == 1
