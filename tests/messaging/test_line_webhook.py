"""The LINE webhook over HTTP: signature, once per webhookEventId, follow/unfollow,
keywords and postbacks; answers delivered through the outbox to the LINE stand-in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omniloop.campaigns.models import Coupon
from omniloop.core.db import Database, Session
from omniloop.customers.consent import may_message
from omniloop.customers.models import Channel, CustomerIdentity, Event
from omniloop.messaging import channels
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import LineWebhookEvent, OutboxMessage
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant
from tests.campaigns.factories import make_campaign
from tests.messaging.conftest import LINE_SECRET, line_user
from tests.messaging.standins import LineStandIn


def sign(body: bytes, secret: str = LINE_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def event(kind: str, user: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "mode": "active", "timestamp": 1764000000000,
            "source": {"type": "user", "userId": user},
            "webhookEventId": "01" + secrets.token_hex(12).upper(),
            "deliveryContext": {"isRedelivery": False},
            "replyToken": secrets.token_hex(16), **fields}


def post(client: TestClient, tenant: Tenant, events: list[dict[str, Any]], *,
         signature: str | None = None, body: bytes | None = None) -> Any:
    raw = body if body is not None else json.dumps(
        {"destination": "U" + "0" * 32, "events": events}).encode()
    return client.post(f"/webhooks/line/{tenant.slug}", content=raw, headers={
        "X-Line-Signature": signature if signature is not None else sign(raw),
        "Content-Type": "application/json"})


def _customer_of(session: Session, tenant: Tenant, user: str) -> str | None:
    session.rollback()
    return session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.tenant_id == tenant.id, CustomerIdentity.value == user))


def test_follow_makes_a_member_with_consent_and_welcomes_them(
        client: TestClient, session: Session, tenant: Tenant, line: LineStandIn,
        dispatcher: Dispatcher) -> None:
    user = line_user()
    follow = event("follow", user, follow={"isUnblocked": False})
    response = post(client, tenant, [follow])
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "processed": 1, "duplicates": 0}
    customer_id = _customer_of(session, tenant, user)
    assert customer_id is not None
    assert may_message(session, tenant.id, customer_id, Channel.line)
    assert session.scalar(select(func.count()).select_from(Event).where(
        Event.tenant_id == tenant.id, Event.type == "line_follow")) == 1
    assert dispatcher.drain().sent == 1
    # A first try answers with the free reply, carrying the event's reply token.
    assert line.requests[0]["kind"] == "reply"
    assert line.requests[0]["body"]["replyToken"] == follow["replyToken"]
    assert "歡迎" in line.requests[0]["body"]["messages"][0]["text"]

    # LINE redelivers the same event: nothing happens again.
    again = post(client, tenant, [dict(follow, deliveryContext={"isRedelivery": True})])
    assert again.json() == {"received": 1, "processed": 0, "duplicates": 1}
    assert dispatcher.drain().claimed == 0
    assert session.scalar(select(func.count()).select_from(Event).where(
        Event.tenant_id == tenant.id, Event.type == "line_follow")) == 1

    # Unfollow switches consent off.
    assert post(client, tenant, [event("unfollow", user)]).status_code == 200
    session.rollback()
    assert not may_message(session, tenant.id, customer_id, Channel.line)


def test_tampered_or_unsigned_body_is_refused_and_changes_nothing(
        client: TestClient, session: Session, tenant: Tenant) -> None:
    user = line_user()
    raw = json.dumps({"events": [event("follow", user)]}).encode()
    tampered = raw.replace(user.encode(), line_user().encode())
    response = post(client, tenant, [], body=tampered, signature=sign(raw))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert post(client, tenant, [], body=raw, signature="").status_code == 401
    assert post(client, tenant, [], body=raw, signature=sign(raw, "another-secret")
                ).status_code == 401
    session.rollback()
    assert session.scalar(select(func.count()).select_from(CustomerIdentity)) == 0
    assert session.scalar(select(func.count()).select_from(LineWebhookEvent)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    # Signed but not a webhook payload: 400, nothing written.
    junk = b'{"events": "nope"}'
    response = post(client, tenant, [], body=junk, signature=sign(junk))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_webhook_body"
    # Unknown brand: 404.
    assert client.post("/webhooks/line/no-such-brand", content=raw,
                       headers={"X-Line-Signature": sign(raw)}).status_code == 404


def test_keyword_answers_with_the_wallet_link(client: TestClient, session: Session,
                                              tenant: Tenant, line: LineStandIn,
                                              dispatcher: Dispatcher) -> None:
    user = line_user()
    for text in ("我的優惠券", "My Coupons", "hello"):
        response = post(client, tenant, [event("message", user, message={
            "type": "text", "id": secrets.token_hex(8), "text": text, "quoteToken": "q"})])
        assert response.status_code == 200
    assert dispatcher.drain().sent == 2  # "hello" is no keyword
    cards = [r["body"]["messages"][0] for r in line.requests]
    assert all(card["type"] == "flex" for card in cards)
    uri = cards[0]["contents"]["footer"]["contents"][0]["action"]["uri"]
    assert uri.startswith(f"http://testserver/c/{tenant.slug}/wallet/")
    # The link opens the person's wallet.
    page = client.get(uri.removeprefix("http://testserver"))
    assert page.status_code == 200


def test_postback_claims_a_coupon_and_a_welcome_coupon_on_follow(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        line: LineStandIn, dispatcher: Dispatcher) -> None:
    campaign = make_campaign(session, tenant, claim_channels=["line"])
    with database.unit_of_work() as work:
        channels.save_rules(work, system_actor(tenant.id), quiet_start="21:00",
                            quiet_end="09:00", weekly_cap=3, welcome_text="歡迎光臨豆子咖啡",
                            welcome_campaign_id=campaign.id)
    first, second = line_user(), line_user()
    post(client, tenant, [event("follow", first)])
    post(client, tenant, [event("postback", second,
                                postback={"data": f"action=claim&campaign={campaign.id}"})])
    post(client, tenant, [event("postback", second, postback={"data": "action=wallet"})])
    assert dispatcher.drain().sent == 3
    session.rollback()
    holders = set(session.scalars(select(Coupon.customer_id).where(
        Coupon.tenant_id == tenant.id, Coupon.campaign_id == campaign.id)))
    assert holders == {_customer_of(session, tenant, first), _customer_of(session, tenant, second)}
    # The welcome (its text, then the coupon card), whichever request went first.
    [welcome] = [r["body"]["messages"] for r in line.requests
                 if r["body"]["messages"][0].get("text") == "歡迎光臨豆子咖啡"]
    assert [m["type"] for m in welcome] == ["text", "flex"]
