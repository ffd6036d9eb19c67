"""The consumer's claim page and wallet: claiming by phone with attribution, device stitching,
the form token, closed offers, and the wallet's coupon states."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from itsdangerous import TimestampSigner
from sqlalchemy import select

from omniloop.campaigns import claims, service
from omniloop.campaigns.consumer_pages import (
    _FORM_SALT,
    DEVICE_COOKIE,
    FORM_MAX_AGE,
    form_token,
    until_text,
    when_text,
)
from omniloop.campaigns.models import Campaign, Coupon, CouponStatus
from omniloop.campaigns.schemas import ClaimIn
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.settings import get_settings
from omniloop.customers.models import CustomerIdentity, IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Store, Tenant
from tests.campaigns.factories import claim_for, make_campaign
from tests.orders.factories import make_order
from tests.tenancy.factories import bearer, fresh, make_api_key, make_store, make_tenant

PHONE = "0912-345-678"
E164 = "+886912345678"


@pytest.fixture
def shop(session: Session) -> tuple[Tenant, Store]:
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店",
                       address="台北市信義區松壽路 11 號")
    return tenant, store


def claim_url(tenant: Tenant, campaign: Campaign, **query: str) -> str:
    path = f"/c/{tenant.slug}/claim/{campaign.id}"
    return f"{path}?{urlencode(query)}" if query else path


def hidden_fields(html: str) -> dict[str, str]:
    return {m[0]: unescape(m[1]) for m in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)}


def open_and_claim(client: TestClient, tenant: Tenant, campaign: Campaign, phone: str = PHONE,
                   **query: str) -> Response:
    page = client.get(claim_url(tenant, campaign, **query))
    assert page.status_code == 200, page.text
    form = hidden_fields(page.text)
    assert "form_token" in form
    return client.post(claim_url(tenant, campaign), data={**form, "phone": phone},
                       follow_redirects=False)


def coupons_of(session: Session, campaign: Campaign) -> list[Coupon]:
    fresh(session)
    return list(session.scalars(select(Coupon).where(
        Coupon.tenant_id == campaign.tenant_id, Coupon.campaign_id == campaign.id,
        Coupon.customer_id.is_not(None))))


def test_claim_page_renders_in_both_languages(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant, name="秋季拿鐵折 NT$100", terms="每人限領一張。",
                             description="全門市適用", min_spend_minor=30000)
    zh = client.get(claim_url(tenant, campaign))
    assert zh.status_code == 200
    assert zh.headers["content-language"] == "zh-Hant-TW"
    assert zh.headers["referrer-policy"] == "no-referrer"
    assert "秋季拿鐵折 NT$100" in zh.text
    assert "豆留森林咖啡" in zh.text
    assert "折抵 $100" in zh.text
    assert "領取優惠券" in zh.text
    assert "手機號碼" in zh.text
    assert "每人限領一張。" in zh.text
    assert "消費滿 $300 可使用" in zh.text
    assert "信義店" in zh.text
    assert "台北市信義區松壽路 11 號" in zh.text
    assert "https://www.google.com/maps/search/?api=1&amp;query=25.036%2C121.567" in zh.text

    en = client.get(claim_url(tenant, campaign, lang="en"))
    assert en.headers["content-language"] == "en"
    assert "NT$100 off" in en.text
    assert "Get the coupon" in en.text
    assert "Mobile number" in en.text
    assert "Minimum spend NT$300" in en.text


def test_claim_lands_in_the_wallet_with_the_coupon_and_its_code(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    response = open_and_claim(client, tenant, campaign)
    assert response.status_code == 303
    location = response.headers["location"]
    [coupon] = coupons_of(session, campaign)
    assert coupon.code is not None
    assert coupon.status == CouponStatus.claimed
    assert location.startswith(f"/c/{tenant.slug}/wallet/")
    assert location.endswith(f"?added={coupon.id}#coupon-{coupon.id}")

    wallet = client.get(location)
    assert wallet.status_code == 200
    assert wallet.headers["referrer-policy"] == "no-referrer"
    assert "我的優惠券" in wallet.text
    assert coupon.code in wallet.text
    assert "已加入您的票夾" in wallet.text
    assert '<svg' in wallet.text
    assert 'class="qr"' in wallet.text
    assert "可使用" in wallet.text
    assert until_text(coupon.valid_until, tenant.timezone) in wallet.text  # type: ignore[arg-type]


def test_attribution_and_channel_are_stored_on_the_coupon(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    response = open_and_claim(client, tenant, campaign, channel="line", utm_source="line_oa",
                              utm_medium="message", utm_campaign="autumn-latte",
                              utm_content="banner-a", utm_term="latte", tp="rich-menu")
    assert response.status_code == 303
    [coupon] = coupons_of(session, campaign)
    assert coupon.claim_channel == "line"
    assert coupon.attribution == {
        "utm_source": "line_oa", "utm_medium": "message", "utm_campaign": "autumn-latte",
        "utm_content": "banner-a", "utm_term": "latte", "touchpoint": "rich-menu"}


def test_unknown_channel_counts_as_web(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    assert open_and_claim(client, tenant, campaign, channel="<LINE!>").status_code == 303
    [coupon] = coupons_of(session, campaign)
    assert coupon.claim_channel == "web"
    assert coupon.attribution is None


def test_second_claim_by_the_same_phone_returns_to_the_same_coupon(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    first = open_and_claim(client, tenant, campaign, phone="0912345678")
    second = open_and_claim(client, tenant, campaign, phone="+886 912 345 678")
    [coupon] = coupons_of(session, campaign)
    assert first.headers["location"].split("?")[0] == second.headers["location"].split("?")[0]
    assert second.headers["location"].endswith(f"?held={coupon.id}#coupon-{coupon.id}")
    wallet = client.get(second.headers["location"])
    assert "您已經有這張優惠券" in wallet.text
    assert wallet.text.count('data-coupon="') == 1


def test_device_cookie_joins_the_profile(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    page = client.get(claim_url(tenant, campaign))
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{DEVICE_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Max-Age=" in cookie
    device = client.cookies[DEVICE_COOKIE]
    again = client.get(claim_url(tenant, campaign))
    assert DEVICE_COOKIE not in again.headers.get("set-cookie", "")  # kept, not renewed

    assert open_and_claim(client, tenant, campaign).status_code == 303
    [coupon] = coupons_of(session, campaign)
    identities = {(i.kind, i.value) for i in session.scalars(select(CustomerIdentity).where(
        CustomerIdentity.tenant_id == tenant.id,
        CustomerIdentity.customer_id == coupon.customer_id))}
    assert (IdentityKind.phone, E164) in identities
    assert (IdentityKind.device, device) in identities


def test_a_shared_device_does_not_merge_two_people(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    assert open_and_claim(client, tenant, campaign, phone="0912345678").status_code == 303
    assert open_and_claim(client, tenant, campaign, phone="0987654321").status_code == 303
    coupons = coupons_of(session, campaign)
    assert len(coupons) == 2
    assert coupons[0].customer_id != coupons[1].customer_id


def test_forged_or_stale_form_token_claims_nothing(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    other = make_campaign(session, tenant)

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - FORM_MAX_AGE - 60

    stale = Earlier(get_settings().resolved_secret_key(), salt=_FORM_SALT).sign(
        f"{tenant.id}:{campaign.id}").decode()
    for token in ("garbage", "", stale, form_token(tenant.id, other.id),
                  form_token(tenant.id, campaign.id) + "x"):
        response = client.post(claim_url(tenant, campaign),
                               data={"form_token": token, "phone": PHONE},
                               follow_redirects=False)
        assert response.status_code == 400, token
        assert 'data-notice="form"' in response.text
        assert 'value="0912-345-678"' in response.text      # the number is kept
        assert 'name="form_token" value="' in response.text  # and a fresh token given
    assert coupons_of(session, campaign) == []


@pytest.mark.parametrize(("state", "text"), [
    ("paused", "暫停"), ("ended", "已於"), ("scheduled", "將於")])
def test_closed_campaigns_say_why(client: TestClient, session: Session,
                                  shop: tuple[Tenant, Store], state: str, text: str) -> None:
    tenant, _ = shop
    fields: dict[str, Any] = {}
    if state == "scheduled":
        start = utcnow() + timedelta(days=3)
        fields = {"starts_at": start.isoformat(),
                  "ends_at": (start + timedelta(days=30)).isoformat()}
    campaign = make_campaign(session, tenant, **fields)
    actor = system_actor(tenant.id)
    if state == "paused":
        service.pause_campaign(session, actor, campaign.id)
    elif state == "ended":
        service.end_campaign(session, actor, campaign.id)
    session.commit()
    page = client.get(claim_url(tenant, campaign))
    assert page.status_code == 200
    assert f'data-closed="{state}"' in page.text
    assert text in page.text
    assert 'name="phone"' not in page.text
    assert campaign.name in page.text
    if state == "scheduled":
        assert when_text(campaign.starts_at, tenant.timezone) in page.text
    # A form opened before the change claims nothing either.
    response = client.post(claim_url(tenant, campaign), data={
        "form_token": form_token(tenant.id, campaign.id), "phone": PHONE})
    assert f'data-closed="{state}"' in response.text
    assert coupons_of(session, campaign) == []


def test_draft_unknown_and_other_brands_campaigns_are_not_found(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    draft = make_campaign(session, tenant, launch=False, name="秘密新品")
    page = client.get(claim_url(tenant, draft))
    assert page.status_code == 404
    assert "秘密新品" not in page.text
    other = make_tenant(session, slug="teashop")
    foreign = make_campaign(session, other)
    assert client.get(f"/c/{tenant.slug}/claim/{foreign.id}").status_code == 404
    assert client.get(f"/c/{tenant.slug}/claim/nope").status_code == 404
    missing = client.get(f"/c/nobody/claim/{foreign.id}")
    assert missing.status_code == 404
    assert "找不到網頁" in missing.text
    assert client.post(f"/c/{tenant.slug}/claim/{foreign.id}",
                       data={"phone": PHONE}).status_code == 404


def test_channel_not_allowed(client: TestClient, session: Session,
                             shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant, claim_channels=["line"])
    page = client.get(claim_url(tenant, campaign, channel="web"))
    assert 'data-closed="channel"' in page.text
    assert "LINE" in page.text
    assert open_and_claim(client, tenant, campaign, channel="line").status_code == 303


def test_all_claimed(client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant, quota=1)
    assert open_and_claim(client, tenant, campaign, phone="0987654321").status_code == 303
    held = coupons_of(session, campaign)[0]
    page = client.get(claim_url(tenant, campaign))
    assert 'data-closed="exhausted"' in page.text
    assert "已全數領取完畢" in page.text
    assert "已經領過了嗎" in page.text
    # Whoever holds one still gets back to it (from the browser it was claimed on);
    # anyone else hears "all claimed".
    back = open_and_claim(client, tenant, campaign, phone="0987-654-321")
    assert back.status_code == 303
    assert back.headers["location"].endswith(f"?held={held.id}#coupon-{held.id}")
    refused = open_and_claim(client, tenant, campaign)
    assert refused.status_code == 409
    assert "已全數領取完畢" in refused.text
    assert len(coupons_of(session, campaign)) == 1


def test_invalid_phone_shows_the_field_error_and_keeps_the_value(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    for phone, message in (("0912-34", "不是可以使用的手機號碼"),
                           ("02-2345-6789", "不是可以使用的手機號碼"),  # a landline
                           ("", "請輸入您的手機號碼")):
        response = open_and_claim(client, tenant, campaign, phone=phone)
        assert response.status_code == 422
        assert 'id="error-phone"' in response.text
        assert message in response.text
        assert 'aria-invalid="true"' in response.text
        assert f'value="{phone}"' in response.text
    assert coupons_of(session, campaign) == []


def test_new_customers_only(client: TestClient, session: Session,
                            shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant, new_customers_only=True)
    make_order(session, tenant, identities=[{"kind": "phone", "value": PHONE}])
    response = open_and_claim(client, tenant, campaign)
    assert response.status_code == 409
    assert 'data-closed="refused"' in response.text
    assert "僅限首次消費的顧客" in response.text
    assert coupons_of(session, campaign) == []
    assert open_and_claim(client, tenant, campaign, phone="0987654321").status_code == 303


def _redeem(client: TestClient, headers: dict[str, str], code: str, key: str) -> None:
    response = client.post("/api/v1/pos/redeem", headers={**headers, "Idempotency-Key": key},
                           json={"code": code, "store_code": "TPE01",
                                 "basket_total_minor": 50000})
    assert response.status_code == 201, response.text


def test_used_offer_cannot_be_claimed_again_but_the_wallet_is_offered(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    headers = bearer(make_api_key(session, tenant, scopes=["pos"]))
    campaign = make_campaign(session, tenant)
    assert open_and_claim(client, tenant, campaign).status_code == 303
    coupon = coupons_of(session, campaign)[0]
    _redeem(client, headers, coupon.code or "", "k-1")
    response = open_and_claim(client, tenant, campaign)
    assert response.status_code == 409
    assert "已領取本優惠達上限" in response.text
    wallet = re.search(r'href="(/c/beanhouse/wallet/[^"]+)"', response.text)
    assert wallet is not None
    assert claims.wallet_token(tenant.id, coupon.customer_id or "") in wallet.group(1)


def test_typing_someone_elses_number_does_not_open_their_wallet(
        app: FastAPI, client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    """The number is not verified yet: a stranger's browser sees only what it just claimed."""
    tenant, _ = shop
    first = make_campaign(session, tenant)
    second = make_campaign(session, tenant)
    assert open_and_claim(client, tenant, first).status_code == 303  # the owner's phone
    owner_code = coupons_of(session, first)[0].code or ""
    assert owner_code
    with TestClient(app) as stranger:
        again = open_and_claim(stranger, tenant, first)
        assert again.status_code == 409
        assert owner_code not in again.text
        assert "/wallet/" not in again.text
        new = open_and_claim(stranger, tenant, second)
        assert new.status_code == 303
        wallet = stranger.get(new.headers["location"]).text
        assert (coupons_of(session, second)[0].code or "-") in wallet
        assert owner_code not in wallet
    fresh(session)
    devices = session.scalars(select(CustomerIdentity.value).where(
        CustomerIdentity.tenant_id == tenant.id, CustomerIdentity.kind == IdentityKind.device))
    assert len(list(devices)) == 1  # the stranger's browser was not tied to the profile


def test_wallet_of_another_brand_or_garbage_is_not_found(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    assert coupon.customer_id is not None
    token = claims.wallet_token(tenant.id, coupon.customer_id)
    assert client.get(f"/c/{tenant.slug}/wallet/{token}").status_code == 200
    other = make_tenant(session, slug="teashop")
    assert client.get(f"/c/{other.slug}/wallet/{token}").status_code == 404
    assert client.get(f"/c/{tenant.slug}/wallet/garbage").status_code == 404
    # Alter the signature's first character: its last one carries unused bits in base64, so
    # changing it can leave the signature the same.
    payload, signature = token.rsplit(".", 1)
    altered = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert client.get(f"/c/{tenant.slug}/wallet/{altered}").status_code == 404
    assert client.get(f"/c/nobody/wallet/{token}").status_code == 404
    foreign = claims.wallet_token(other.id, coupon.customer_id)
    page = client.get(f"/c/{tenant.slug}/wallet/{foreign}")
    assert page.status_code == 404
    assert coupon.code is not None
    assert coupon.code not in page.text


def test_redeemed_and_expired_coupons_show_their_state_and_no_qr(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    headers = bearer(make_api_key(session, tenant, scopes=["pos"]))
    used_campaign = make_campaign(session, tenant, name="用過的")
    old_campaign = make_campaign(session, tenant, name="過期的", coupon_valid_days=1,
                                 starts_at=(utcnow() - timedelta(days=20)).isoformat())
    live_campaign = make_campaign(session, tenant, name="能用的", coupon_valid_days=7)
    used = claim_for(session, tenant, used_campaign)
    _redeem(client, headers, used.code or "", "k-1")
    fresh(session)
    old = claims.claim_coupon(session, system_actor(tenant.id), old_campaign.id, ClaimIn(
        identities=[IdentityIn(kind=IdentityKind.phone, value=PHONE)]),
        now=utcnow() - timedelta(days=10)).coupon
    session.commit()
    live = claim_for(session, tenant, live_campaign)
    assert used.customer_id is not None
    assert used.customer_id == old.customer_id == live.customer_id

    page = client.get(claims.wallet_path(session, tenant.id, used.customer_id)).text
    articles = re.findall(r'<article class="c-card c-coupon[^"]*"[^>]*data-coupon="(\w+)" '
                          r'data-state="(\w+)">(.*?)</article>', page, re.S)
    states = {coupon_id: (state, body) for coupon_id, state, body in articles}
    assert [a[0] for a in articles] == [live.id, used.id, old.id]  # usable first
    assert states[live.id][0] == "usable"
    assert "<svg" in states[live.id][1]
    assert states[used.id][0] == "redeemed"
    assert "<svg" not in states[used.id][1]
    assert "已使用" in states[used.id][1]
    assert "信義店" in states[used.id][1]
    assert states[old.id][0] == "expired"
    assert "<svg" not in states[old.id][1]
    assert "已過期" in states[old.id][1]


def test_shared_code_campaigns_show_the_shared_code(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant, code_mode="shared", shared_code="SPRING100")
    coupon = claim_for(session, tenant, campaign)
    assert coupon.code is None
    assert coupon.customer_id is not None
    page = client.get(claims.wallet_path(session, tenant.id, coupon.customer_id))
    assert re.search(r'data-code>SPRING100<', page.text)


def test_campaign_stores_are_listed_with_map_links(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    east = make_store(session, tenant, code="TPE02", name="東區店",
                      address="台北市大安區忠孝東路四段 1 號", latitude=None, longitude=None)
    make_store(session, tenant, code="TPE03", name="不參加店")
    campaign = make_campaign(session, tenant, store_ids=[east.id])
    page = client.get(claim_url(tenant, campaign)).text
    assert "東區店" in page
    assert "不參加店" not in page
    assert ("https://www.google.com/maps/search/?api=1&amp;query="
            "%E5%8F%B0%E5%8C%97%E5%B8%82") in page


def test_until_text_shows_midnight_as_the_last_minute_of_the_day_before() -> None:
    from datetime import UTC, datetime

    def plain(text: str) -> str:
        return text.replace("\u2060", "").replace("\u00a0", " ")

    assert plain(until_text(datetime(2026, 12, 31, 16, 0, tzinfo=UTC), "Asia/Taipei")) == (
        "2026-12-31 23:59")
    assert plain(until_text(datetime(2026, 12, 31, 6, 30, tzinfo=UTC), "Asia/Taipei")) == (
        "2026-12-31 14:30")
