"""The outbox and the worker's rounds against the LINE stand-in: once, batched, retried,
dead-lettered, and within consent, quiet hours and the weekly cap (with a clock we move)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from omniloop.core.clock import as_utc
from omniloop.core.db import Database, Session
from omniloop.customers.consent import set_consent
from omniloop.customers.models import Channel, ConsentStatus
from omniloop.messaging import channels, line_messages, outbox
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import OutboxChannel, OutboxMessage, OutboxStatus, Purpose
from omniloop.messaging.outbox import Draft, enqueue, enqueue_many
from omniloop.messaging.service import message_customer
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.messaging.conftest import Clock, make_member
from tests.messaging.standins import LineStandIn

TEXT = {"text": "本週拿鐵買一送一"}


def _rows(session: Session, tenant: Tenant) -> list[OutboxMessage]:
    session.rollback()
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.tenant_id == tenant.id).order_by(OutboxMessage.id)))


def test_enqueued_with_the_change_and_sent_once(database: Database, session: Session,
                                                tenant: Tenant, line: LineStandIn,
                                                dispatcher: Dispatcher) -> None:
    member = make_member(session, tenant)
    actor = system_actor(tenant.id)
    # Rolled back with its transaction: no message.
    with database.sessionmaker() as work:
        message_customer(work, actor, member.id, OutboxChannel.line, Purpose.marketing,
                         "promo:1", TEXT)
        work.rollback()
    assert _rows(session, tenant) == []
    # Committed twice under one dedup key: one message.
    for _ in range(2):
        with database.unit_of_work() as work:
            message_customer(work, actor, member.id, OutboxChannel.line, Purpose.marketing,
                             "promo:1", TEXT)
    assert len(_rows(session, tenant)) == 1
    report = dispatcher.drain()
    assert (report.sent, report.requests) == (1, 1)
    assert line.deliveries[member.line_user] == 1
    assert line.requests[0]["kind"] == "push"
    assert dispatcher.drain().claimed == 0  # nothing sent twice
    row = _rows(session, tenant)[0]
    assert row.status is OutboxStatus.sent
    assert row.attempts == 1
    assert row.sent_at is not None


def test_same_content_goes_out_as_multicasts_of_at_most_500(
        database: Database, session: Session, tenant: Tenant, line: LineStandIn,
        dispatcher: Dispatcher) -> None:
    members = [make_member(session, tenant) for _ in range(12)]
    users = [f"U{i:032x}" for i in range(1200)]
    payload = {"messages": [line_messages.text("週年慶")]}
    with database.unit_of_work() as work:
        # The 12 real members plus 1,188 transactional rows (no consent needed) to the rest.
        enqueue_many(work, system_actor(tenant.id), [
            Draft(OutboxChannel.line, Purpose.marketing, m.line_user, f"a:{m.id}", payload,
                  customer_id=m.id) for m in members] + [
            Draft(OutboxChannel.line, Purpose.transactional, u, f"b:{u}", payload)
            for u in users[:1188]])
    report = dispatcher.drain()
    assert report.sent == 1200
    sizes = sorted(len(r["body"]["to"]) for r in line.requests)
    # Marketing and transactional rows share content, so they share multicasts.
    assert sum(sizes) == 1200
    assert max(sizes) <= 500
    assert len(sizes) == 3
    assert all(r["kind"] == "multicast" for r in line.requests)
    assert len({r["retry_key"] for r in line.requests}) == 3
    assert all(line.deliveries[u] == 1 for u in users[:1188])
    assert all(line.deliveries[m.line_user] == 1 for m in members)


def test_429_and_500_are_retried_with_backoff_then_dead_lettered(
        database: Database, session: Session, tenant: Tenant, line: LineStandIn,
        dispatcher: Dispatcher, clock: Clock) -> None:
    member = make_member(session, tenant)
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        message_customer(work, actor, member.id, OutboxChannel.line, Purpose.transactional,
                         "t:1", TEXT)
    line.fail_next = [429, 500]
    assert dispatcher.run_once().retried == 1
    first = _rows(session, tenant)[0]
    wait = (as_utc(first.next_attempt_at) - clock.now).total_seconds()
    assert first.status is OutboxStatus.pending
    assert 10 <= wait <= 11
    assert "429" in (first.last_error or "")
    assert dispatcher.run_once().claimed == 0  # not due yet
    clock.advance(seconds=wait)
    assert dispatcher.run_once().retried == 1
    second = _rows(session, tenant)[0]
    wait = (as_utc(second.next_attempt_at) - clock.now).total_seconds()
    assert 20 <= wait <= 22
    assert second.attempts == 2
    clock.advance(seconds=wait)
    assert dispatcher.run_once().sent == 1
    assert line.deliveries[member.line_user] == 1
    # The same retry key on every try of the message.
    assert len({r["retry_key"] for r in line.requests}) == 1

    # Always failing: a dead letter after the last try (max_attempts = 4).
    with database.unit_of_work() as work:
        message_customer(work, actor, member.id, OutboxChannel.line, Purpose.transactional,
                         "t:2", TEXT)
    line.always = 500
    for _ in range(4):
        dispatcher.run_once()
        clock.advance(hours=1)
    dead = [r for r in _rows(session, tenant) if r.dedup_key == "t:2"][0]
    assert dead.status is OutboxStatus.dead
    assert dead.attempts == 4
    assert "500" in (dead.last_error or "")
    # Replayed from the admin: sent once LINE works again.
    line.always = None
    with database.unit_of_work() as work:
        assert outbox.replay(work, actor, [dead.id], now=clock.now) == 1
    assert dispatcher.drain().sent == 1
    assert line.deliveries[member.line_user] == 2


def test_refused_for_good_is_dead_at_once(database: Database, session: Session,
                                          tenant: Tenant, line: LineStandIn,
                                          dispatcher: Dispatcher) -> None:
    with database.unit_of_work() as work:
        enqueue(work, system_actor(tenant.id), Draft(
            OutboxChannel.line, Purpose.transactional, "not-a-line-user", "x",
            {"messages": [line_messages.text("hi")]}))
    assert dispatcher.run_once().dead == 1
    row = _rows(session, tenant)[0]
    assert row.status is OutboxStatus.dead
    assert row.attempts == 1
    assert "400" in (row.last_error or "")


def test_consent_is_checked_when_sending(database: Database, session: Session,
                                        tenant: Tenant, line: LineStandIn,
                                        dispatcher: Dispatcher) -> None:
    actor = system_actor(tenant.id)
    never = make_member(session, tenant, consent=False)
    later_out = make_member(session, tenant)
    fine = make_member(session, tenant)
    with database.unit_of_work() as work:
        for m in (never, later_out, fine):
            message_customer(work, actor, m.id, OutboxChannel.line, Purpose.marketing,
                             f"m:{m.id}", TEXT)
        message_customer(work, actor, never.id, OutboxChannel.line, Purpose.transactional,
                         "receipt", {"text": "收據"})
    # Withdrawn after the message was enqueued, before it went out.
    with database.unit_of_work() as work:
        set_consent(work, actor, later_out.id, Channel.line, ConsentStatus.opted_out, "test")
    report = dispatcher.drain()
    assert (report.sent, report.skipped) == (2, 2)
    assert line.delivered_to() == {fine.line_user, never.line_user}
    skipped = [r for r in _rows(session, tenant) if r.status is OutboxStatus.skipped]
    assert {r.reason for r in skipped} == {"no_consent"}


def test_quiet_hours_hold_marketing_until_morning(database: Database, session: Session,
                                                  tenant: Tenant, line: LineStandIn,
                                                  dispatcher: Dispatcher,
                                                  clock: Clock) -> None:
    actor = system_actor(tenant.id)
    member = make_member(session, tenant)
    clock.now = clock.now.replace(hour=14)  # 22:00 in Taipei
    with database.unit_of_work() as work:
        message_customer(work, actor, member.id, OutboxChannel.line, Purpose.marketing,
                         "night-promo", TEXT)
        message_customer(work, actor, member.id, OutboxChannel.line, Purpose.transactional,
                         "night-receipt", {"text": "您的訂單已成立"})
    report = dispatcher.drain()
    assert (report.sent, report.deferred) == (1, 1)  # the transactional one passes
    held = [r for r in _rows(session, tenant) if r.dedup_key == "night-promo"][0]
    assert held.status is OutboxStatus.pending
    assert held.attempts == 0
    assert as_utc(held.next_attempt_at) == clock.now.replace(hour=1) + timedelta(days=1)
    clock.advance(hours=10, minutes=59)  # 08:59 Taipei
    assert dispatcher.drain().claimed == 0
    clock.advance(minutes=1)  # 09:00
    assert dispatcher.drain().sent == 1
    assert line.deliveries[member.line_user] == 2


def test_quiet_hours_follow_the_brand_time_zone(session: Session) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 22:00 Taipei, 23:00 Tokyo, 09:00 NY
    assert channels.quiet_until(at, "Asia/Taipei", "21:00", "09:00") == datetime(
        2026, 11, 26, 1, 0, tzinfo=UTC)
    assert channels.quiet_until(at, "America/New_York", "21:00", "09:00") is None
    assert channels.quiet_until(at, "Asia/Tokyo", "22:00", "23:30") == datetime(
        2026, 11, 25, 14, 30, tzinfo=UTC)
    assert channels.quiet_until(at, "Asia/Taipei", "00:00", "00:00") is None


def test_weekly_cap_per_customer(database: Database, session: Session, tenant: Tenant,
                                 line: LineStandIn, dispatcher: Dispatcher,
                                 clock: Clock) -> None:
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        channels.save_rules(work, actor, quiet_start="21:00", quiet_end="09:00", weekly_cap=2)
    member = make_member(session, tenant)
    for day in range(3):
        with database.unit_of_work() as work:
            message_customer(work, actor, member.id, OutboxChannel.line, Purpose.marketing,
                             f"promo:{day}", {"text": f"第 {day} 天"})
            message_customer(work, actor, member.id, OutboxChannel.line,
                             Purpose.transactional, f"receipt:{day}", {"text": "收據"})
        dispatcher.drain()
        clock.advance(days=1)
    statuses = {r.dedup_key: (r.status, r.reason) for r in _rows(session, tenant)}
    assert statuses["promo:0"][0] is OutboxStatus.sent
    assert statuses["promo:1"][0] is OutboxStatus.sent
    assert statuses["promo:2"] == (OutboxStatus.skipped, "frequency_cap")
    assert all(statuses[f"receipt:{d}"][0] is OutboxStatus.sent for d in range(3))
    # A week after the first, one more fits.
    clock.advance(days=4, hours=1)
    with database.unit_of_work() as work:
        message_customer(work, actor, member.id, OutboxChannel.line, Purpose.marketing,
                         "promo:7", TEXT)
    assert dispatcher.drain().sent == 1


def test_two_workers_never_send_one_message_twice(database: Database, session: Session,
                                                  tenant: Tenant, line: LineStandIn,
                                                  clock: Clock) -> None:
    import threading

    from omniloop.core.ratelimit import MemoryRateLimiter
    from tests.messaging.conftest import dispatch_config

    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        enqueue_many(work, actor, [Draft(
            OutboxChannel.line, Purpose.transactional, f"U{i:032x}", f"k:{i}",
            {"messages": [line_messages.text(f"#{i}")]}) for i in range(300)])
    workers = [Dispatcher(database, dispatch_config(line.url, claim_size=40), clock=clock,
                          limiter=MemoryRateLimiter()) for _ in range(3)]
    threads = [threading.Thread(target=w.drain) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in workers:
        w.close()
    assert len(line.deliveries) == 300
    assert set(line.deliveries.values()) == {1}
    session.rollback()
    assert session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.status == OutboxStatus.sent)) == 300


def test_replay_refuses_unknown_and_undead_messages(database: Database, session: Session,
                                                    tenant: Tenant) -> None:
    import pytest

    from omniloop.messaging.errors import MessageNotFound, MessageNotReplayable

    member = make_member(session, tenant)
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        pending = message_customer(work, actor, member.id, OutboxChannel.line,
                                   Purpose.transactional, "t:replay", TEXT)
    assert pending is not None
    with database.unit_of_work() as work:
        with pytest.raises(MessageNotFound):
            outbox.replay(work, actor, ["0" * 26])
        with pytest.raises(MessageNotReplayable):
            outbox.replay(work, actor, [pending])
        work.rollback()
