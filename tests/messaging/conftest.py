"""Fixtures for messaging: stand-in servers, a brand with channels set up, a clock to move."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from omniloop.core.db import Database, Session
from omniloop.core.ratelimit import MemoryRateLimiter
from omniloop.customers.consent import set_consent
from omniloop.customers.models import Channel, ConsentStatus
from omniloop.messaging import channels, outbox
from omniloop.messaging.dispatch import DispatchConfig, Dispatcher
from omniloop.messaging.models import OutboxChannel
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.customers.factories import make_customer
from tests.messaging.standins import LineStandIn, SmtpStandIn
from tests.tenancy.factories import make_tenant

LINE_TOKEN = "test-channel-access-token"
LINE_SECRET = "test-channel-secret"


class Clock:
    """A clock the test moves by hand (UTC)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(autouse=True)
def _no_wakeups(app: object) -> Iterator[None]:
    """Tests drive the dispatcher themselves; no Huey wake-ups from commits (the app, once
    created, installs them: it is created first)."""
    outbox.set_waker(None)
    yield
    outbox.set_waker(None)


def daytime_clock() -> Clock:
    """14:00 in Taipei, two days ahead (messages enqueued now are due): outside the default
    quiet hours (21:00–09:00), whatever the hour the tests run at."""
    start = (datetime.now(UTC) + timedelta(days=2)).replace(hour=6, minute=0, second=0,
                                                            microsecond=0)
    return Clock(start)


@pytest.fixture
def clock() -> Clock:
    return daytime_clock()


@pytest.fixture
def line() -> Iterator[LineStandIn]:
    with LineStandIn(token=LINE_TOKEN) as standin:
        yield standin


@pytest.fixture
def smtp() -> Iterator[SmtpStandIn]:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    with SmtpStandIn() as server:
        yield server


def setup_email(database: Database, tenant: Tenant, smtp: SmtpStandIn) -> None:
    """The brand's e-mail channel pointed at the stand-in."""
    with database.unit_of_work() as work:
        channels.save_channel(work, system_actor(tenant.id), OutboxChannel.email, {
            "host": "127.0.0.1", "port": str(smtp.port), "from_address": "news@bean.example",
            "security": "none", "username": ""}, {"password": ""})


@pytest.fixture
def tenant(session: Session) -> Tenant:
    tenant = make_tenant(session)
    channels.save_channel(session, system_actor(tenant.id), OutboxChannel.line, {},
                          {"channel_access_token": LINE_TOKEN, "channel_secret": LINE_SECRET})
    session.commit()
    return tenant


def dispatch_config(line_url: str, **overrides: object) -> DispatchConfig:
    values: dict[str, object] = {
        "max_attempts": 4, "retry_base_seconds": 10.0, "retry_max_seconds": 600.0,
        "lease_seconds": 60, "claim_size": 5000, "send_threads": 4,
        "rates": {"line": 10_000, "email": 1000, "sms": 1000, "webhook": 1000},
        "line_base_url": line_url}
    values.update(overrides)
    return DispatchConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def dispatcher(database: Database, line: LineStandIn, clock: Clock) -> Iterator[Dispatcher]:
    d = Dispatcher(database, dispatch_config(line.url), clock=clock,
                   limiter=MemoryRateLimiter())
    yield d
    d.close()


def line_user() -> str:
    return "U" + secrets.token_hex(16)


@dataclass
class Member:
    id: str
    line_user: str


def make_member(session: Session, tenant: Tenant, *, consent: bool = True,
                email: str | None = None, phone: str | None = None) -> Member:
    """A customer with a LINE identity (and e-mail/phone if given), opted in to them."""
    user = line_user()
    identities = [("line", user)]
    if email:
        identities.append(("email", email))
    if phone:
        identities.append(("phone", phone))
    customer_id = make_customer(session, tenant, *identities)
    if consent:
        actor = system_actor(tenant.id)
        set_consent(session, actor, customer_id, Channel.line, ConsentStatus.opted_in, "test")
        if email:
            set_consent(session, actor, customer_id, Channel.email, ConsentStatus.opted_in,
                        "test")
        if phone:
            set_consent(session, actor, customer_id, Channel.sms, ConsentStatus.opted_in,
                        "test")
        session.commit()
    return Member(customer_id, user)
