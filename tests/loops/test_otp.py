"""With phone verification on, an in-store QR and a referral invitation ask for the code sent
by SMS before anyone joins or takes a reward under a number."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.core.db import Database, Session
from omniloop.core.ratelimit import MemoryRateLimiter, set_rate_limiter
from omniloop.customers.models import CustomerIdentity, IdentityKind
from omniloop.loops.models import Purpose
from omniloop.messaging import channels
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import OutboxChannel
from omniloop.tenancy.access import system_actor
from tests.loops.factories import Shop, form_token_of, make_shop, make_touchpoint
from tests.messaging.conftest import dispatch_config
from tests.messaging.standins import SmsStandIn


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    set_rate_limiter(MemoryRateLimiter())
    yield
    set_rate_limiter(None)


@pytest.fixture
def shop(session: Session) -> Shop:
    return make_shop(session)


@pytest.fixture
def sms(database: Database, shop: Shop) -> Iterator[SmsStandIn]:
    with SmsStandIn(token="t") as server:
        with database.unit_of_work() as work:
            actor = system_actor(shop.tenant.id)
            channels.save_channel(work, actor, OutboxChannel.sms, {"url": server.url},
                                  {"token": "t"})
            channels.save_rules(work, actor, quiet_start="21:00", quiet_end="09:00",
                                weekly_cap=3, otp_required=True)
        yield server


def _phones(session: Session) -> int:
    session.rollback()
    return int(session.scalar(select(func.count()).select_from(CustomerIdentity).where(
        CustomerIdentity.kind == IdentityKind.phone)) or 0)


def _code_sent(database: Database, sms: SmsStandIn) -> str:
    dispatcher = Dispatcher(database, dispatch_config("http://127.0.0.1:9"),
                            limiter=MemoryRateLimiter())
    try:
        assert dispatcher.drain().sent == 1
    finally:
        dispatcher.close()
    found = re.search(r"(\d{6})", sms.delivered[-1]["text"])
    assert found is not None
    return found.group(1)


def test_a_touchpoint_asks_for_the_sms_code_first(client: TestClient, session: Session,
                                                  database: Database, shop: Shop,
                                                  sms: SmsStandIn) -> None:
    table = make_touchpoint(session, shop, Purpose.membership, reward_points=20)
    page = client.get(f"/t/{table.code}")
    base = {"form_token": form_token_of(page.text), "phone": "0912 345 678"}
    asked = client.post(f"/t/{table.code}", data=base, follow_redirects=False)
    assert asked.status_code == 200
    assert 'name="sms_code"' in asked.text
    assert _phones(session) == 0  # nobody joined on a number alone
    verification = re.search(r'name="verification_id" value="([^"]+)"', asked.text)
    assert verification is not None
    code = _code_sent(database, sms)
    wrong = "000000" if code != "000000" else "111111"
    refused = client.post(f"/t/{table.code}", data=base | {
        "verification_id": verification.group(1), "sms_code": wrong}, follow_redirects=False)
    assert refused.status_code == 422
    assert 'id="error-sms_code"' in refused.text
    assert _phones(session) == 0
    joined = client.post(f"/t/{table.code}", data=base | {
        "verification_id": verification.group(1), "sms_code": code}, follow_redirects=False)
    assert joined.status_code == 303, joined.text
    assert _phones(session) == 1


def test_a_referral_invitation_asks_for_the_sms_code_first(
        client: TestClient, session: Session, database: Database, shop: Shop,
        sms: SmsStandIn) -> None:
    from omniloop.loops.referrals import code_for
    from tests.customers.factories import make_customer

    referrer = make_customer(session, shop.tenant, ("phone", "0911 111 111"))
    session.rollback()
    referral_code = code_for(session, system_actor(shop.tenant.id), referrer)
    session.commit()
    url = f"/c/{shop.tenant.slug}/ref/{referral_code}"
    page = client.get(url)
    assert page.status_code == 200, page.text
    base = {"form_token": form_token_of(page.text), "phone": "0922 222 222"}
    asked = client.post(url, data=base, follow_redirects=False)
    assert asked.status_code == 200
    assert 'name="sms_code"' in asked.text
    assert _phones(session) == 1  # the referrer only
    verification = re.search(r'name="verification_id" value="([^"]+)"', asked.text)
    assert verification is not None
    code = _code_sent(database, sms)
    accepted = client.post(url, data=base | {"verification_id": verification.group(1),
                                             "sms_code": code}, follow_redirects=False)
    assert accepted.status_code == 303, accepted.text
    assert _phones(session) == 2


def test_a_verified_code_ties_a_new_browser_to_a_known_number(
        client: TestClient, session: Session, database: Database, shop: Shop,
        sms: SmsStandIn) -> None:
    """A member known by phone scans a table QR on a phone this brand never saw: the code
    texted to the number proves them as a browser tied to the profile would, so the browser
    joins the profile (as on the claim page)."""
    from tests.customers.factories import make_customer

    member = make_customer(session, shop.tenant, ("phone", "0912 345 678"))
    session.commit()
    table = make_touchpoint(session, shop, Purpose.membership, reward_points=20)
    page = client.get(f"/t/{table.code}")
    base = {"form_token": form_token_of(page.text), "phone": "0912 345 678"}
    asked = client.post(f"/t/{table.code}", data=base, follow_redirects=False)
    verification = re.search(r'name="verification_id" value="([^"]+)"', asked.text)
    assert verification is not None
    code = _code_sent(database, sms)
    joined = client.post(f"/t/{table.code}", data=base | {
        "verification_id": verification.group(1), "sms_code": code}, follow_redirects=False)
    assert joined.status_code == 303, joined.text
    session.rollback()
    devices = session.scalars(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.tenant_id == shop.tenant.id,
        CustomerIdentity.kind == IdentityKind.device)).all()
    assert devices == [member]
