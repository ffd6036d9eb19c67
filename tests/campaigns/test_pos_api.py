"""The POS API end to end: validate, redeem exactly once, retries, voids, refusals, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omniloop.campaigns.claims import token_expiry
from omniloop.campaigns.models import Campaign, Coupon, CouponStatus
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.qr import qr_png
from omniloop.core.ratelimit import MemoryRateLimiter, set_rate_limiter
from omniloop.core.settings import get_settings
from omniloop.core.tokens import TokenKind, sign_token
from omniloop.tenancy.models import Store, Tenant
from tests.campaigns.factories import claim_for, make_campaign
from tests.qr_decode import decode_png
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant


@pytest.fixture
def shop(session: Session) -> tuple[Tenant, Store, dict[str, str]]:
    tenant = make_tenant(session)
    store = make_store(session, tenant, code="TPE01", name="信義店")
    key = make_api_key(session, tenant, scopes=["pos"])
    return tenant, store, bearer(key)


def check(client: TestClient, headers: dict[str, str], code: str, total: int = 50000,
          **fields: Any) -> dict[str, Any]:
    body = {"code": code, "store_code": "TPE01", "basket_total_minor": total, **fields}
    response = client.post("/api/v1/pos/validate", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def redeem(client: TestClient, headers: dict[str, str], code: str, key: str,
           total: int = 50000, **fields: Any) -> Any:
    body = {"code": code, "store_code": "TPE01", "basket_total_minor": total, **fields}
    return client.post("/api/v1/pos/redeem", json=body,
                       headers={**headers, "Idempotency-Key": key})


def test_claimed_coupon_validates_redeems_once_and_replays(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, store, headers = shop
    campaign = make_campaign(session, tenant, min_spend_minor=30000)
    coupon = claim_for(session, tenant, campaign)
    assert coupon.code is not None

    result = check(client, headers, coupon.code.lower())
    assert result["valid"] is True
    assert result["discount_minor"] == 10000
    assert result["campaign"]["offer"]

    first = redeem(client, headers, coupon.code, "k-1")
    assert first.status_code == 201, first.text
    again = redeem(client, headers, coupon.code, "k-1")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()

    other = redeem(client, headers, coupon.code, "k-2")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "coupon_already_redeemed"
    assert "信義店" in other.json()["error"]["message"]

    fresh(session)
    stored = session.get(Campaign, (tenant.id, campaign.id))
    assert stored is not None
    assert stored.redeemed_count == 1
    assert stored.discount_minor == 10000
    assert check(client, headers, coupon.code)["reason"]["code"] == "coupon_already_redeemed"


def test_same_key_different_body_is_refused(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, _, headers = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    assert redeem(client, headers, coupon.code or "", "k-1").status_code == 201
    response = redeem(client, headers, coupon.code or "", "k-1", total=60000)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    missing = client.post("/api/v1/pos/redeem", headers=headers, json={
        "code": coupon.code, "store_code": "TPE01", "basket_total_minor": 100})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "idempotency_key_required"


def test_void_gives_the_coupon_back_once(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, _, headers = shop
    campaign = make_campaign(session, tenant, quota=1)
    coupon = claim_for(session, tenant, campaign)
    first = redeem(client, headers, coupon.code or "", "k-1").json()
    voided = client.post(f"/api/v1/pos/redemptions/{first['id']}/void",
                         json={"reason": "wrong basket"}, headers=headers)
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    twice = client.post(f"/api/v1/pos/redemptions/{first['id']}/void",
                        json={"reason": "again"}, headers=headers)
    assert twice.json()["void_reason"] == "wrong basket"
    fresh(session)
    stored = session.get(Coupon, (tenant.id, coupon.id))
    assert stored is not None
    assert stored.status == CouponStatus.claimed
    # The quota of one is free again: one more redemption succeeds, the next does not.
    assert redeem(client, headers, coupon.code or "", "k-2").status_code == 201
    assert redeem(client, headers, coupon.code or "", "k-3").status_code == 409
    fresh(session)
    again = session.get(Campaign, (tenant.id, campaign.id))
    assert again is not None
    assert again.redeemed_count == 1


def test_refusals_say_exactly_why(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, store, headers = shop
    other_store = make_store(session, tenant, code="TPE02", name="大安店")
    campaign = make_campaign(session, tenant, min_spend_minor=30000, store_ids=[other_store.id])
    coupon = claim_for(session, tenant, campaign)
    reason = check(client, headers, coupon.code or "")["reason"]
    assert reason["code"] == "store_not_eligible"
    assert "信義店" in reason["message"]

    anywhere = make_campaign(session, tenant, min_spend_minor=30000)
    coupon = claim_for(session, tenant, anywhere, phone="0922-000-111")
    reason = check(client, headers, coupon.code or "", total=20000)["reason"]
    assert reason["code"] == "minimum_spend_not_met"

    unknown = check(client, headers, "NOPE-0000")
    assert unknown["valid"] is False
    assert unknown["reason"]["code"] == "coupon_not_found"

    ended = make_campaign(session, tenant, starts_at=(utcnow() - timedelta(days=3)).isoformat(),
                          ends_at=(utcnow() + timedelta(days=1)).isoformat(),
                          coupon_valid_days=1)
    coupon = claim_for(session, tenant, ended, phone="0933-000-111")
    fresh(session)
    stored = session.get(Coupon, (tenant.id, coupon.id))
    assert stored is not None
    stored.valid_until = utcnow() - timedelta(minutes=1)
    session.commit()
    reason = check(client, headers, coupon.code or "")["reason"]
    assert reason["code"] == "coupon_expired"


def test_qr_token_redeems_and_forgeries_do_not(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, _, headers = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    token = sign_token(tenant.id, TokenKind.COUPON, coupon.id, utcnow() + timedelta(days=1))
    altered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    assert check(client, headers, altered)["reason"]["code"] == "token_invalid"
    other = make_tenant(session)
    foreign = sign_token(other.id, TokenKind.COUPON, coupon.id, utcnow() + timedelta(days=1))
    assert check(client, headers, foreign)["reason"]["code"] == "token_wrong_tenant"
    assert redeem(client, headers, token, "k-qr").status_code == 201


def test_a_rendered_qr_png_decodes_to_a_token_that_redeems(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, _, headers = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    token = sign_token(tenant.id, TokenKind.COUPON, coupon.id, token_expiry(coupon))
    scanned = decode_png(qr_png(token))
    assert scanned == token
    response = redeem(client, headers, scanned, "k-png")
    assert response.status_code == 201, response.text
    assert response.json()["coupon_id"] == coupon.id
    expired = sign_token(tenant.id, TokenKind.COUPON, coupon.id, utcnow() - timedelta(seconds=5))
    assert check(client, headers, expired)["reason"]["code"] == "token_expired"


@pytest.fixture
def guess_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    set_rate_limiter(MemoryRateLimiter())
    monkeypatch.setattr(get_settings(), "pos_guess_limit", 3)
    yield 3
    set_rate_limiter(None)


def test_guessing_codes_is_rate_limited(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]],
        guess_limit: int) -> None:
    tenant, _, headers = shop
    campaign = make_campaign(session, tenant, min_spend_minor=90000)
    coupon = claim_for(session, tenant, campaign)
    # Refusals that are not guesses (minimum spend) do not count.
    for _ in range(guess_limit + 1):
        assert check(client, headers, coupon.code or "")["reason"]["code"] == (
            "minimum_spend_not_met")
    for n in range(guess_limit):
        assert check(client, headers, f"GUESS-{n:04d}")["reason"]["code"] == "coupon_not_found"
    blocked = client.post("/api/v1/pos/validate", headers=headers, json={
        "code": coupon.code, "store_code": "TPE01", "basket_total_minor": 100000})
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert int(blocked.headers["Retry-After"]) > 0
    also = redeem(client, headers, coupon.code or "", "k-blocked", total=100000)
    assert also.status_code == 429


def test_another_tenants_key_cannot_see_the_coupon(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    other = make_tenant(session)
    make_store(session, other, code="TPE01")
    foreign = bearer(make_api_key(session, other, scopes=["pos"]))
    assert check(client, foreign, coupon.code or "")["reason"]["code"] == "coupon_not_found"
    assert redeem(client, foreign, coupon.code or "", "k-x").status_code == 404


def test_a_retried_shared_code_redemption_returns_the_first(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, dict[str, str]]) -> None:
    tenant, _, headers = shop
    campaign = make_campaign(session, tenant, code_mode="shared", shared_code="ONCEMORE",
                             quota=1)
    first = redeem(client, headers, "ONCEMORE", "k-shared")
    assert first.status_code == 201, first.text
    # The quota is now used up, yet the retry is answered with the first result.
    again = redeem(client, headers, "ONCEMORE", "k-shared")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert redeem(client, headers, "ONCEMORE", "k-other").json()["error"]["code"] == (
        "quota_exhausted")
    fresh(session)
    stored = session.get(Campaign, (tenant.id, campaign.id))
    assert stored is not None
    assert stored.redeemed_count == 1
