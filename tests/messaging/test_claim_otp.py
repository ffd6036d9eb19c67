"""The claim page asks for a code sent by SMS when the brand turns phone verification on:
nobody claims in another person's name, and a verified phone opens its full wallet."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.campaigns.consumer_pages import form_token
from omniloop.campaigns.models import Coupon
from omniloop.core.db import Database, Session
from omniloop.core.ratelimit import MemoryRateLimiter, set_rate_limiter
from omniloop.messaging import channels
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import OutboxChannel
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.campaigns.factories import make_campaign
from tests.messaging.standins import SmsStandIn


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    set_rate_limiter(MemoryRateLimiter())
    yield
    set_rate_limiter(None)


@pytest.fixture
def sms(database: Database, tenant: Tenant) -> Iterator[SmsStandIn]:
    with SmsStandIn(token="t") as server:
        with database.unit_of_work() as work:
            actor = system_actor(tenant.id)
            channels.save_channel(work, actor, OutboxChannel.sms, {"url": server.url},
                                  {"token": "t"})
            channels.save_rules(work, actor, quiet_start="21:00", quiet_end="09:00",
                                weekly_cap=3, otp_required=True)
        yield server


def _coupons(session: Session, tenant: Tenant) -> int:
    session.rollback()
    return int(session.scalar(select(func.count()).select_from(Coupon).where(
        Coupon.tenant_id == tenant.id, Coupon.customer_id.is_not(None))) or 0)


def test_claim_needs_the_code_from_the_sms(client: TestClient, session: Session,
                                           tenant: Tenant, sms: SmsStandIn,
                                           dispatcher: Dispatcher) -> None:
    campaign = make_campaign(session, tenant)
    url = f"/c/{tenant.slug}/claim/{campaign.id}"
    base = {"form_token": form_token(tenant.id, campaign.id), "phone": "0912 345 678"}
    asked = client.post(url, data=base)
    assert asked.status_code == 200
    assert 'name="code"' in asked.text
    assert 'data-notice="code-sent"' in asked.text
    assert _coupons(session, tenant) == 0  # nothing claimed on a number alone
    match = re.search(r'name="verification_id" value="([^"]+)"', asked.text)
    assert match is not None
    verification_id = match.group(1)
    assert dispatcher.drain().sent == 1
    code = re.search(r"(\d{6})", sms.delivered[-1]["text"])
    assert code is not None
    assert sms.delivered[-1]["to"] == "+886912345678"

    wrong = "000000" if code.group(1) != "000000" else "111111"
    refused = client.post(url, data=base | {"verification_id": verification_id,
                                            "code": wrong})
    assert refused.status_code == 422
    assert 'id="error-code"' in refused.text
    assert _coupons(session, tenant) == 0
    # The code proves this number, not another one.
    other = client.post(url, data=base | {"phone": "0987 654 321",
                                          "verification_id": verification_id,
                                          "code": code.group(1)})
    assert other.status_code == 422
    assert _coupons(session, tenant) == 0

    # The right code for the right number.
    done = client.post(url, data=base | {"verification_id": verification_id,
                                         "code": code.group(1)}, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert f"/c/{tenant.slug}/wallet/" in done.headers["location"]
    assert _coupons(session, tenant) == 1


def test_without_the_setting_no_code_is_asked(client: TestClient, session: Session,
                                              tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    done = client.post(f"/c/{tenant.slug}/claim/{campaign.id}", data={
        "form_token": form_token(tenant.id, campaign.id), "phone": "0912 345 678"},
        follow_redirects=False)
    assert done.status_code == 303
    assert _coupons(session, tenant) == 1
