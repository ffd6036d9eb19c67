"""Sends to audiences: channel members, a tag, near a store; the campaign holdout left out
and recorded; scheduled sends; per-recipient status and progress over the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.campaigns.models import AudienceGroup, CampaignParticipant
from omniloop.core.db import Database, Session
from omniloop.core.errors import OmniloopError
from omniloop.customers.models import Customer
from omniloop.messaging import sends
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import MessageSend, OutboxChannel, SendStatus
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.campaigns.factories import make_campaign
from tests.messaging.conftest import Clock, make_member
from tests.messaging.standins import LineStandIn
from tests.tenancy.factories import bearer, make_api_key, make_store


def _tag(database: Database, tenant: Tenant, customer_id: str, *tags: str,
         home_store_id: str | None = None) -> None:
    with database.unit_of_work() as work:
        customer = work.get_one(Customer, (tenant.id, customer_id))
        customer.tags = list(tags)
        customer.home_store_id = home_store_id


def test_campaign_send_leaves_out_and_records_the_holdout(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        line: LineStandIn, dispatcher: Dispatcher) -> None:
    campaign = make_campaign(session, tenant, holdout_share_bp=2500)
    members = [make_member(session, tenant) for _ in range(40)]
    make_member(session, tenant, consent=False)  # never in a LINE audience
    key = bearer(make_api_key(session, tenant))
    created = client.post("/api/v1/message-sends", headers=key, json={
        "name": "週年慶", "channel": "line", "audience": {"kind": "channel"},
        "campaign_id": campaign.id, "content": {"text": "週年慶優惠券，先搶先贏！"}})
    assert created.status_code == 201, created.text
    send = created.json()
    assert send["audience_count"] == 40
    assert send["status"] == "enqueued"
    holdout = send["holdout_count"]
    assert 0 < holdout < 40
    assert send["enqueued_count"] == 40 - holdout
    session.rollback()
    groups = {p.customer_id: p.audience_group for p in session.scalars(
        select(CampaignParticipant).where(CampaignParticipant.campaign_id == campaign.id))}
    held_out = {c for c, g in groups.items() if g is AudienceGroup.holdout}
    assert len(held_out) == holdout
    assert len(groups) == 40

    assert dispatcher.drain().sent == 40 - holdout
    delivered = line.delivered_to()
    assert delivered == {m.line_user for m in members if m.id not in held_out}
    # One multicast for everybody: the card is the same for all.
    assert [r["kind"] for r in line.requests] == ["multicast"]
    card = line.requests[0]["body"]["messages"][1]
    assert card["contents"]["footer"]["contents"][0]["action"]["uri"].endswith(
        f"/c/{tenant.slug}/claim/{campaign.id}")
    progress = client.get(f"/api/v1/message-sends/{send['id']}", headers=key).json()
    assert progress["progress"]["sent"] == 40 - holdout
    per_recipient = client.get("/api/v1/messages", headers=key,
                               params={"send_id": send["id"], "limit": 500}).json()
    assert {m["status"] for m in per_recipient} == {"sent"}
    assert len(per_recipient) == 40 - holdout
    # Released again (a retried request): nobody gets it twice, the holdout stays out.
    with database.unit_of_work() as work:
        row = work.get_one(MessageSend, (tenant.id, send["id"]))
        assert sends.release(work, system_actor(tenant.id), row) == 0


def test_tag_and_distance_audiences_with_personal_fields(
        database: Database, session: Session, tenant: Tenant, line: LineStandIn,
        dispatcher: Dispatcher) -> None:
    xinyi = make_store(session, tenant, latitude=25.0330, longitude=121.5654)
    banqiao = make_store(session, tenant, latitude=25.0143, longitude=121.4672)  # ~10 km
    near, far, tagged = (make_member(session, tenant) for _ in range(3))
    _tag(database, tenant, near.id, home_store_id=xinyi.id)
    _tag(database, tenant, far.id, home_store_id=banqiao.id)
    _tag(database, tenant, tagged.id, "vip")
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        assert sends.audience_members(
            work, actor, OutboxChannel.line, {"kind": "tag", "tag": "vip"}) == [tagged.id]
        assert sends.audience_members(work, actor, OutboxChannel.line, {
            "kind": "near_store", "store_id": xinyi.id, "km": 3}) == [near.id]
        assert set(sends.audience_members(work, actor, OutboxChannel.line, {
            "kind": "near_store", "store_id": xinyi.id, "km": 15})) == {near.id, far.id}
        sends.create_send(work, actor, name="VIP", channel=OutboxChannel.line,
                          audience={"kind": "tag", "tag": "vip"},
                          content={"text": "{name} 您好，這是您的專屬錢包：{wallet_url}"})
    assert dispatcher.drain().sent == 1
    [(user, messages)] = line.delivered_messages
    assert user == tagged.line_user
    assert f"/c/{tenant.slug}/wallet/" in messages[0]["text"]


def test_scheduled_send_waits_for_its_time(database: Database, session: Session,
                                           tenant: Tenant, line: LineStandIn,
                                           dispatcher: Dispatcher, clock: Clock) -> None:
    member = make_member(session, tenant)
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        send = sends.create_send(work, actor, name="明早", channel=OutboxChannel.line,
                                 audience={"kind": "channel"}, content={"text": "早安"},
                                 scheduled_at=clock.now + timedelta(hours=2), now=clock.now)
        send_id = send.id
    with database.unit_of_work() as work:
        assert sends.release_due(work, now=clock.now) == 0
    clock.advance(hours=2)
    with database.unit_of_work() as work:
        assert sends.release_due(work, now=clock.now) == 1
        assert work.get_one(MessageSend, (tenant.id, send_id)).status is SendStatus.enqueued
    assert dispatcher.drain().sent == 1
    assert line.deliveries[member.line_user] == 1


def test_bad_sends_are_refused_with_codes(client: TestClient, session: Session,
                                          tenant: Tenant) -> None:
    key = bearer(make_api_key(session, tenant))
    base = {"name": "x", "channel": "line", "audience": {"kind": "channel"},
            "content": {"text": "hi {nickname}"}}
    bad_var = client.post("/api/v1/message-sends", headers=key, json=base)
    assert bad_var.status_code == 422
    assert bad_var.json()["error"]["code"] == "message_content_invalid"
    no_tag = client.post("/api/v1/message-sends", headers=key, json=dict(
        base, content={"text": "hi"}, audience={"kind": "tag"}))
    assert no_tag.json()["error"]["code"] == "audience_invalid"
    no_subject = client.post("/api/v1/message-sends", headers=key, json=dict(
        base, channel="email", content={"text": "hi"}))
    assert no_subject.json()["error"]["code"] == "message_content_invalid"
    unknown = client.get("/api/v1/message-sends/nope", headers=key)
    assert unknown.status_code == 404
    session.rollback()
    assert session.scalars(select(MessageSend)).all() == []


def test_a_saved_rfm_segment_is_an_audience(database: Database, session: Session,
                                            tenant: Tenant) -> None:
    """Buyers scored into a saved segment receive the send; a consenting member who never
    bought is not in it, nor is a buyer who did not consent."""
    from omniloop.analytics.rfm import SEGMENT_KEYS
    from omniloop.analytics.segments import save_segment
    from omniloop.core.clock import to_local, utcnow
    from tests.orders.factories import make_order

    buyers = [make_member(session, tenant) for _ in range(2)]
    never_bought = make_member(session, tenant)
    silent = make_member(session, tenant, consent=False)
    for index, member in enumerate([*buyers, silent]):
        make_order(session, tenant, customer_id=member.id, external_id=f"SEG-{index}",
                   paid_at=(utcnow() - timedelta(days=3 + index)).isoformat())
    actor = system_actor(tenant.id)
    with database.unit_of_work() as work:
        segment = save_segment(work, actor, "Everyone who bought", list(SEGMENT_KEYS),
                               to_local(utcnow(), tenant.timezone).date())
        segment_id = segment.id
    with database.unit_of_work() as work:
        members = sends.audience_members(work, actor, OutboxChannel.line,
                                         {"kind": "segment", "segment_id": segment_id})
    assert sorted(members) == sorted(b.id for b in buyers)
    assert never_bought.id not in members
    with database.unit_of_work() as work, pytest.raises(OmniloopError) as refused:
        sends.audience_members(work, actor, OutboxChannel.line,
                               {"kind": "segment", "segment_id": "01NOSUCHSEGMENT00000000000"})
    assert refused.value.code == "segment_not_found"


def test_status_counts_by_send_match_each_sends_counts(
        database: Database, session: Session, tenant: Tenant,
        dispatcher: Dispatcher) -> None:
    from omniloop.messaging import outbox

    actor = system_actor(tenant.id)
    for _ in range(3):
        make_member(session, tenant)
    with database.unit_of_work() as work:
        first = sends.create_send(work, actor, name="一", channel=OutboxChannel.line,
                                  audience={"kind": "channel"}, content={"text": "早安"})
        second = sends.create_send(work, actor, name="二", channel=OutboxChannel.line,
                                   audience={"kind": "channel"}, content={"text": "晚安"})
        ids = [first.id, second.id, "0" * 26]
    dispatcher.drain()
    with database.unit_of_work(write=False) as work:
        together = outbox.status_counts_by_send(work, actor, ids)
        assert together == {i: outbox.status_counts(work, actor, send_id=i) for i in ids}
        assert outbox.status_counts_by_send(work, actor, []) == {}
