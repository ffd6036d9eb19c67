"""Loyalty through the API: the member card at the POS, paying with points, adjustments."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.tokens import TokenKind, sign_token
from omniloop.loyalty.member_card import member_token
from omniloop.tenancy.models import Tenant
from tests.loyalty.test_ledger import order
from tests.tenancy.factories import bearer, fresh, make_api_key, make_tenant


@pytest.fixture
def member(session: Session) -> tuple[Tenant, str]:
    from omniloop.loyalty.program import stored_program

    tenant = make_tenant(session)
    fresh(session)
    stored_program(session, tenant.id).earn_unit_minor = 100
    session.commit()
    placed = order(session, tenant, "M-1", 50000)  # 500 points
    assert placed.customer_id is not None
    return tenant, placed.customer_id


def test_a_scanned_member_card_names_the_member(client: TestClient, session: Session,
                                                member: tuple[Tenant, str]) -> None:
    tenant, customer_id = member
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    token = member_token(tenant.id, customer_id)
    scanned = client.post("/api/v1/pos/members/scan", json={"token": token}, headers=pos)
    assert scanned.status_code == 200, scanned.text
    body = scanned.json()
    assert body["customer_id"] == customer_id
    assert body["balance"] == 500
    assert body["balance_value_minor"] == 50000
    assert body["phone"] == "0912-***-678"
    old = sign_token(tenant.id, TokenKind.MEMBER, customer_id, utcnow() - timedelta(seconds=1))
    refused = client.post("/api/v1/pos/members/scan", json={"token": old}, headers=pos)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "token_expired"
    altered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    refused = client.post("/api/v1/pos/members/scan", json={"token": altered}, headers=pos)
    assert refused.json()["error"]["code"] == "token_invalid"
    coupon_token = sign_token(tenant.id, TokenKind.COUPON, customer_id,
                              utcnow() + timedelta(minutes=5))
    refused = client.post("/api/v1/pos/members/scan", json={"token": coupon_token}, headers=pos)
    assert refused.json()["error"]["code"] == "token_wrong_kind"


def test_paying_with_points_once_per_key(client: TestClient, session: Session,
                                         member: tuple[Tenant, str]) -> None:
    tenant, customer_id = member
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    body = {"customer_id": customer_id, "points": 120, "order_total_minor": 80000}
    first = client.post("/api/v1/pos/points/redeem", json=body,
                        headers={**pos, "Idempotency-Key": "p-1"})
    assert first.status_code == 201, first.text
    assert first.json()["discount_minor"] == 12000
    again = client.post("/api/v1/pos/points/redeem", json=body,
                        headers={**pos, "Idempotency-Key": "p-1"})
    assert again.status_code == 200
    assert again.json()["entry"]["id"] == first.json()["entry"]["id"]
    for points, code in ((-5, "points_invalid"), (0, "points_invalid"),
                         (390, "insufficient_points"), (5, "below_minimum_redemption")):
        refused = client.post("/api/v1/pos/points/redeem", headers={
            **pos, "Idempotency-Key": f"bad-{points}"}, json={**body, "points": points})
        assert refused.json()["error"]["code"] == code, (points, refused.text)
    share = client.post("/api/v1/pos/points/redeem", headers={**pos, "Idempotency-Key": "s"},
                        json={**body, "points": 300, "order_total_minor": 20000})
    assert share.json()["error"]["code"] == "redeem_share_exceeded"
    missing = client.post("/api/v1/pos/points/redeem", json=body, headers=pos)
    assert missing.json()["error"]["code"] == "idempotency_key_required"
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    points = client.get(f"/api/v1/customers/{customer_id}/points", headers=admin).json()
    assert points["balance"] == 380
    assert [e["kind"] for e in points["entries"]] == ["redeem", "earn"]


def test_adjustments_need_a_reason_and_the_right_role(client: TestClient, session: Session,
                                                      member: tuple[Tenant, str]) -> None:
    tenant, customer_id = member
    admin = bearer(make_api_key(session, tenant, scopes=["admin"]))
    pos = bearer(make_api_key(session, tenant, scopes=["pos"]))
    url = f"/api/v1/customers/{customer_id}/points/adjustments"
    no_reason = client.post(url, json={"points": 10, "reason": ""},
                            headers={**admin, "Idempotency-Key": "a"})
    assert no_reason.status_code == 422
    counter = client.post(url, json={"points": 10, "reason": "x"},
                          headers={**pos, "Idempotency-Key": "a"})
    assert counter.status_code == 403
    done = client.post(url, json={"points": -100, "reason": "double earn"},
                       headers={**admin, "Idempotency-Key": "a"})
    assert done.status_code == 201, done.text
    assert done.json()["balance_after"] == 400
    other = bearer(make_api_key(session, make_tenant(session), scopes=["admin"]))
    assert client.get(f"/api/v1/customers/{customer_id}/points",
                      headers=other).status_code == 404
