"""Outgoing webhooks: subscribed per event type, signed (Standard Webhooks), written with the
order's own transaction, retried, dead-lettered and replayed over the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omniloop.core.db import Database, Session
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.senders import sign_webhook
from omniloop.tenancy.models import Tenant
from tests.messaging.conftest import Clock
from tests.messaging.standins import WebhookReceiver, verify_standard_webhook
from tests.tenancy.factories import bearer, make_api_key


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


def _order(external_id: str) -> dict[str, Any]:
    return {"external_id": external_id, "source": "pos",
            "currency": "TWD", "paid_at": "2026-11-20T10:00:00+08:00",
            "lines": [{"sku": "LATTE", "name": "拿鐵", "quantity": 2, "unit_price_minor": 12000}]}


def test_signature_matches_the_standard_webhooks_example() -> None:
    # The example from the Standard Webhooks specification's reference tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    assert sign_webhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_orders_are_announced_signed_retried_and_replayed(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        receiver: WebhookReceiver, dispatcher: Dispatcher, clock: Clock) -> None:
    key = bearer(make_api_key(session, tenant))
    created = client.post("/api/v1/webhook-endpoints", headers=key, json={
        "url": receiver.url + "/hooks", "event_types": ["order.recorded"]})
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]
    assert receiver.secret.startswith("whsec_")
    assert client.post("/api/v1/webhook-endpoints", headers=key, json={
        "url": "ftp://x", "event_types": ["order.recorded"]}).status_code == 422
    assert client.post("/api/v1/webhook-endpoints", headers=key, json={
        "url": receiver.url, "event_types": ["nope"]}).json()["error"]["code"] == \
        "webhook_endpoint_invalid"

    # A refused order announces nothing; a recorded one, once.
    bad = dict(_order("A-1"), lines=[])
    assert client.post("/api/v1/orders", headers=key, json=bad).status_code == 422
    order = client.post("/api/v1/orders", headers=key, json=_order("A-1"))
    assert order.status_code in (200, 201), order.text
    client.post("/api/v1/orders", headers=key, json=_order("A-1"))  # the client's retry

    receiver.fail_next = [500]
    assert dispatcher.run_once().retried == 1
    clock.advance(minutes=1)
    assert dispatcher.run_once().sent == 1
    assert len(receiver.deliveries) == 1
    [(webhook_id, count)] = receiver.deliveries.items()
    assert count == 1
    assert receiver.bad_signatures == 0
    body = receiver.bodies[webhook_id]
    assert body["type"] == "order.recorded"
    assert body["data"]["id"] == order.json()["id"]
    # Both tries carried the same webhook-id (the receiver's idempotency key).
    assert {h["webhook-id"] for h in receiver.headers_seen} == {webhook_id}
    assert all(verify_standard_webhook(receiver.secret, h, b"") is False
               for h in receiver.headers_seen)  # a signature covers the body

    # An endpoint that keeps failing: dead letter after max_attempts (4), then replay.
    receiver.fail_next = [503] * 4
    client.post("/api/v1/orders", headers=key, json=_order("A-2"))
    for _ in range(4):
        dispatcher.run_once()
        clock.advance(hours=1)
    dead = client.get("/api/v1/messages", headers=key, params={"status": "dead"}).json()
    assert [m["channel"] for m in dead] == ["webhook"]
    assert dead[0]["attempts"] == 4
    assert "503" in dead[0]["last_error"]
    replayed = client.post("/api/v1/messages/replay", headers=key, json={"ids": [dead[0]["id"]]})
    assert replayed.json() == {"replayed": 1}
    again = client.post("/api/v1/messages/replay", headers=key, json={"ids": [dead[0]["id"]]})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "message_not_replayable"
    assert dispatcher.drain().sent == 1
    assert len(receiver.deliveries) == 2
    assert set(receiver.deliveries.values()) == {1}
    assert client.get("/api/v1/messages/stats", headers=key).json()["sent"] == 2
