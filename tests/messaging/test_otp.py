"""Phone verification: code by SMS (provider stand-in), hashed at rest, limited checks,
expiry, rate limits per phone and per IP, and a token the pages can trust."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.core.ratelimit import MemoryRateLimiter, RateLimited, set_rate_limiter
from omniloop.messaging import channels, otp
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.errors import VerificationRequired
from omniloop.messaging.models import OutboxChannel, PhoneVerification
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.messaging.standins import SmsStandIn


@pytest.fixture
def sms(database: Database, tenant: Tenant) -> Iterator[SmsStandIn]:
    with SmsStandIn(token="t") as server:
        with database.unit_of_work() as work:
            channels.save_channel(work, system_actor(tenant.id), OutboxChannel.sms,
                                  {"url": server.url + "/sms"}, {"token": "t"})
        yield server


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    set_rate_limiter(MemoryRateLimiter())
    yield
    set_rate_limiter(None)


def _code(sms: SmsStandIn) -> str:
    match = re.search(r"(\d{6})", sms.delivered[-1]["text"])
    assert match is not None
    return match.group(1)


def test_code_by_sms_then_a_token(client: TestClient, session: Session, tenant: Tenant,
                                  sms: SmsStandIn, dispatcher: Dispatcher) -> None:
    started = client.post(f"/api/v1/brands/{tenant.slug}/phone-verifications",
                          json={"phone": "0912 345 678"})
    assert started.status_code == 201, started.text
    verification_id = started.json()["id"]
    assert dispatcher.drain().sent == 1
    code = _code(sms)
    assert sms.delivered[-1]["to"] == "+886912345678"
    session.rollback()
    row = session.get_one(PhoneVerification, (tenant.id, verification_id))
    assert code not in row.code_hash
    assert len(row.code_hash) == 64

    url = f"/api/v1/brands/{tenant.slug}/phone-verifications/{verification_id}/check"
    wrong = "000000" if code != "000000" else "111111"
    refused = client.post(url, json={"code": wrong})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "verification_code_invalid"
    ok = client.post(url, json={"code": code})
    assert ok.status_code == 200, ok.text
    assert ok.json()["phone"] == "+886912345678"
    assert otp.verified_phone(ok.json()["token"], tenant.id) == "+886912345678"
    with pytest.raises(VerificationRequired):
        otp.verified_phone(ok.json()["token"], "another-tenant")
    with pytest.raises(VerificationRequired):
        otp.verified_phone(ok.json()["token"] + "x", tenant.id)
    # A code works once.
    assert client.post(url, json={"code": code}).status_code == 400


def test_five_wrong_checks_burn_the_code(client: TestClient, tenant: Tenant, sms: SmsStandIn,
                                         dispatcher: Dispatcher) -> None:
    verification_id = client.post(f"/api/v1/brands/{tenant.slug}/phone-verifications",
                                  json={"phone": "0912345678"}).json()["id"]
    dispatcher.drain()
    code = _code(sms)
    url = f"/api/v1/brands/{tenant.slug}/phone-verifications/{verification_id}/check"
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(otp.MAX_CHECKS):
        assert client.post(url, json={"code": wrong}).status_code == 400
    assert client.post(url, json={"code": code}).status_code == 400  # right, but too late


def test_codes_expire(database: Database, tenant: Tenant) -> None:
    start = utcnow()
    with database.unit_of_work() as work:
        row = otp.start(work, tenant, "0912345678", "10.0.0.1", now=start)
        verification_id = row.id
    # We cannot read the code (hashed): check that even a correct digest is refused late by
    # replacing the hash with one of a known code.
    with database.unit_of_work() as work:
        stored = work.get_one(PhoneVerification, (tenant.id, verification_id))
        stored.code_hash = otp._digest(tenant.id, verification_id, "123456")
    with database.unit_of_work() as work:
        late = otp.check(work, tenant.id, verification_id, "123456",
                         now=start + otp.TTL + timedelta(seconds=1))
    assert not late.ok
    with database.unit_of_work() as work:
        assert otp.check(work, tenant.id, verification_id, "123456",
                         now=start + otp.TTL - timedelta(seconds=1)).ok


def test_rate_limited_per_phone_and_per_ip(client: TestClient, session: Session,
                                           tenant: Tenant, database: Database) -> None:
    url = f"/api/v1/brands/{tenant.slug}/phone-verifications"
    for _ in range(otp.PER_PHONE[0]):
        assert client.post(url, json={"phone": "0912345678"}).status_code == 201
    limited = client.post(url, json={"phone": "0912-345-678"})
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in limited.headers
    limiter = MemoryRateLimiter()
    with database.unit_of_work() as work:
        for i in range(otp.PER_IP[0]):
            otp.start(work, tenant, f"09123456{i:02d}", "203.0.113.9", limiter=limiter)
        work.rollback()
    with pytest.raises(RateLimited):
        otp.start(session, tenant, "0912345699", "203.0.113.9", limiter=limiter)
    bad = client.post(url, json={"phone": "12"})
    assert bad.status_code == 422
    session.rollback()
    assert len(session.scalars(select(PhoneVerification)).all()) == otp.PER_PHONE[0]
