"""The cashier's page /pos through the real forms: store choice, scan → confirm → redeemed,
idempotent double submits, every refusal's message, QR tokens, voids, rate limit, CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from omniloop.campaigns.models import Campaign, Coupon, CouponStatus, Redemption
from omniloop.campaigns.pos_pages import STORE_COOKIE, BadInput, parse_total
from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.ratelimit import MemoryRateLimiter, set_rate_limiter
from omniloop.core.settings import get_settings
from omniloop.core.tokens import TokenKind, sign_token
from omniloop.customers.identities import mask_phone
from omniloop.tenancy.models import Role, StaffUser, Store, Tenant
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import fresh, make_staff, make_store, make_tenant
from tests.web.admin_helpers import csrf_from, login

_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


@pytest.fixture(autouse=True)
def _limiter() -> Iterator[MemoryRateLimiter]:
    """Failed lookups are counted per staff member and IP: each test starts uncounted."""
    limiter = MemoryRateLimiter()
    set_rate_limiter(limiter)
    yield limiter
    set_rate_limiter(None)


@pytest.fixture
def shop(session: Session) -> tuple[Tenant, Store, StaffUser]:
    tenant = make_tenant(session, name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店")
    cashier = make_staff(session, tenant, Role.cashier, stores_=[store])
    return tenant, store, cashier


@pytest.fixture
def cashier_client(client: TestClient, shop: tuple[Tenant, Store, StaffUser]) -> TestClient:
    assert login(client, shop[2].email, next_path="/pos").headers["location"] == "/pos"
    return client


def english(client: TestClient) -> None:
    """Switch the session to English (remembered in the language cookie), so assertions
    read the service's messages as written in errors.py."""
    assert client.get("/pos?lang=en").status_code == 200


def check(client: TestClient, code: str, total: str = "500", **extra: str) -> Response:
    page = client.get("/pos")
    return client.post("/pos/check", data={"csrf_token": csrf_from(page.text), "code": code,
                                           "total": total, **extra})


def confirm_fields(html: str) -> dict[str, str]:
    fields = {name: unescape(value) for name, value in _HIDDEN.findall(
        html.split('action="/pos/redeem"', 1)[1])}
    assert {"csrf_token", "code", "total_minor", "key"} <= set(fields), fields
    return fields


def redeem_through_page(client: TestClient, code: str, total: str = "500") -> Response:
    confirm = check(client, code, total)
    assert confirm.status_code == 200, confirm.text
    return client.post("/pos/redeem", data=confirm_fields(confirm.text))


def error_panel(html: str) -> str:
    match = re.search(r'<div class="pos-result pos-error" role="alert" data-code="([^"]+)">'
                      r'(.*?)</div>\s*</div>', html, re.S)
    assert match, "no error panel on the page"
    return f"{match.group(1)}: {unescape(re.sub(r'<[^>]+>', ' ', match.group(2)))}"


def campaign_of(session: Session, campaign: Campaign) -> Campaign:
    fresh(session)
    stored = session.get(Campaign, (campaign.tenant_id, campaign.id))
    assert stored is not None
    return stored


# --- who and where -------------------------------------------------------------------------

def test_signed_out_goes_to_the_login_and_back(
        client: TestClient, shop: tuple[Tenant, Store, StaffUser]) -> None:
    response = client.get("/pos", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/pos"
    signed_in = login(client, shop[2].email, next_path="/pos")
    assert signed_in.headers["location"] == "/pos"
    assert client.get("/pos").status_code == 200


def test_cashier_bound_to_one_store_works_there(cashier_client: TestClient) -> None:
    page = cashier_client.get("/pos")
    assert page.status_code == 200
    assert 'class="pos-store" data-store="TPE01"><strong>信義店</strong>' in page.text
    assert 'name="code"' in page.text
    assert "autofocus" in page.text
    assert "掃描或輸入優惠券代碼" in page.text  # zh-TW by default
    assert "/pos/store" not in page.text  # nothing to switch to
    assert 'href="/pos"' in cashier_client.get("/admin").text  # the admin nav links here


def test_owner_picks_the_store_once_and_can_switch(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, store, _ = shop
    other = make_store(session, tenant, code="TPE02", name="大安店")
    owner = make_staff(session, tenant, Role.owner)
    login(client, owner.email)
    response = client.get("/pos", follow_redirects=False)
    assert response.headers["location"] == "/pos/store"
    picker = client.get("/pos/store")
    assert "信義店" in picker.text
    assert "大安店" in picker.text
    chosen = client.post("/pos/store", data={"csrf_token": csrf_from(picker.text),
                                             "store_id": other.id}, follow_redirects=False)
    assert chosen.headers["location"] == "/pos"
    assert client.cookies.get(STORE_COOKIE) == other.id
    page = client.get("/pos")
    assert 'data-store="TPE02"><strong>大安店</strong>' in page.text
    assert 'href="/pos/store"' in page.text
    # Switching is the same form; a store of another brand is not found.
    foreign = make_store(session, make_tenant(session), code="TPE09")
    refused = client.post("/pos/store", data={"csrf_token": csrf_from(picker.text),
                                              "store_id": foreign.id})
    assert refused.status_code == 404
    client.post("/pos/store", data={"csrf_token": csrf_from(picker.text), "store_id": store.id})
    assert 'data-store="TPE01"' in client.get("/pos").text


def test_staff_without_pos_rights_are_refused(
        client: TestClient, session: Session, shop: tuple[Tenant, Store, StaffUser]) -> None:
    marketer = make_staff(session, shop[0], Role.marketer)
    login(client, marketer.email)
    assert client.get("/pos").status_code == 403
    assert 'href="/pos"' not in client.get("/admin").text


# --- the flow -------------------------------------------------------------------------------

def test_check_confirm_redeem_shows_success(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant, name="秋季拿鐵折 NT$100")
    coupon = claim_for(session, tenant, campaign, phone="0912-345-678")
    assert coupon.code is not None

    confirm = check(cashier_client, coupon.code.lower(), total="1,280")
    assert confirm.status_code == 200, confirm.text
    text = unescape(confirm.text)
    assert "秋季拿鐵折 NT$100" in text
    assert "$100" in text  # the offer (describe_value)
    assert coupon.code in text
    assert "0912-***-678" in text
    assert "345" not in text.split("pos-phone", 1)[1][:40]
    assert "$1,280" in text
    assert "−$100" in text
    assert "$1,180" in text
    fields = confirm_fields(confirm.text)
    assert fields["total_minor"] == "128000"

    done = cashier_client.post("/pos/redeem", data=fields, follow_redirects=False)
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith("/pos/redemptions/")
    success = cashier_client.get(location)
    assert 'class="pos-result pos-success"' in success.text
    assert "已核銷" in success.text
    redemption_id = location.rsplit("/", 1)[1]
    assert redemption_id in success.text
    assert coupon.code in success.text
    assert 'href="/pos"' in success.text  # next customer
    assert "作廢" in success.text  # void, within the window

    assert campaign_of(session, campaign).redeemed_count == 1
    # The scan screen lists it under today's redemptions, with a void button.
    scan = cashier_client.get("/pos")
    assert f'data-redemption="{redemption_id}"' in scan.text
    assert f'action="/pos/redemptions/{redemption_id}/void"' in scan.text


def test_double_submit_of_the_confirm_form_redeems_once(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    fields = confirm_fields(check(cashier_client, coupon.code or "").text)
    first = cashier_client.post("/pos/redeem", data=fields)
    second = cashier_client.post("/pos/redeem", data=fields)
    assert first.status_code == second.status_code == 200
    assert first.url == second.url
    for page in (first, second):
        assert 'class="pos-result pos-success"' in page.text
    assert campaign_of(session, campaign).redeemed_count == 1
    assert len(session.scalars(select(Redemption).where(
        Redemption.tenant_id == tenant.id)).all()) == 1


def test_a_scanned_qr_token_works_like_a_code(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    token = sign_token(tenant.id, TokenKind.COUPON, coupon.id, utcnow() + timedelta(days=1))
    assert token.startswith("OL1")
    assert len(token) > 100
    confirm = check(cashier_client, token)
    assert confirm.status_code == 200, confirm.text
    assert coupon.code is not None
    assert coupon.code in confirm.text
    done = cashier_client.post("/pos/redeem", data=confirm_fields(confirm.text))
    assert 'class="pos-result pos-success"' in done.text
    fresh(session)
    stored = session.get(Coupon, (tenant.id, coupon.id))
    assert stored is not None
    assert stored.status == CouponStatus.redeemed


def test_missing_total_keeps_the_scanned_code(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    english(cashier_client)
    response = check(cashier_client, "CAFE-1234", total="")
    assert response.status_code == 422
    assert "Enter the basket total" in error_panel(response.text)
    assert 'value="CAFE-1234"' in response.text
    assert re.search(r'name="total"[^>]*autofocus', response.text, re.S)
    bad = check(cashier_client, "CAFE-1234", total="abc")
    assert "such as 350" in error_panel(bad.text)
    empty = check(cashier_client, "  ")
    assert "Scan or type a coupon code" in error_panel(empty.text)


# --- refusals, each with its precise message ---------------------------------------------

def test_each_refusal_says_why(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    english(cashier_client)

    # Expired: the date it expired on.
    expiring = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, expiring, phone="0933-000-111")
    fresh(session)
    stored = session.get(Coupon, (tenant.id, coupon.id))
    assert stored is not None
    stored.valid_until = utcnow() - timedelta(days=1)
    expired_on = to_local(stored.valid_until, tenant.timezone).strftime("%Y-%m-%d")
    session.commit()
    panel = error_panel(check(cashier_client, coupon.code or "").text)
    assert panel.startswith("coupon_expired:")
    assert f"This coupon expired on {expired_on}" in panel

    # Already used: where and when.
    used = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, used, phone="0933-000-222")
    assert "pos-success" in redeem_through_page(cashier_client, coupon.code or "").text
    again = check(cashier_client, coupon.code or "")
    assert again.status_code == 409
    panel = error_panel(again.text)
    assert panel.startswith("coupon_already_redeemed:")
    assert "already used at 信義店 on " in panel
    assert (coupon.code or "?") in panel  # the code that was scanned, for the record

    # Another store's coupon.
    other = make_store(session, tenant, code="TPE02", name="大安店")
    elsewhere = make_campaign(session, tenant, store_ids=[other.id])
    coupon = claim_for(session, tenant, elsewhere, phone="0933-000-333")
    panel = error_panel(check(cashier_client, coupon.code or "").text)
    assert panel.startswith("store_not_eligible:")
    assert "cannot be used at 信義店" in panel

    # Minimum spend: the minimum and this basket.
    big = make_campaign(session, tenant, min_spend_minor=30000)
    coupon = claim_for(session, tenant, big, phone="0933-000-444")
    panel = error_panel(check(cashier_client, coupon.code or "", total="200").text)
    assert panel.startswith("minimum_spend_not_met:")
    assert "Minimum spend is NT$300; this basket comes to NT$200." in panel

    # Outside its days: neither today nor tomorrow in Taipei (so midnight cannot flip it).
    today = to_local(utcnow(), tenant.timezone).weekday()
    days = [d for d in range(7) if d not in (today, (today + 1) % 7)]
    weekly = make_campaign(session, tenant, weekdays=days)
    coupon = claim_for(session, tenant, weekly, phone="0933-000-555")
    panel = error_panel(check(cashier_client, coupon.code or "").text)
    assert panel.startswith("outside_hours:")
    assert "This coupon can be used only" in panel

    # Unknown.
    panel = error_panel(check(cashier_client, "NOPE-0000").text)
    assert panel.startswith("coupon_not_found:")
    assert "NOPE-0000" in panel


def test_refusal_in_zh_tw_and_the_input_is_ready_again(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant, min_spend_minor=30000)
    coupon = claim_for(session, tenant, campaign)
    page = check(cashier_client, coupon.code or "", total="200")
    assert "無法使用此優惠券" in page.text
    assert "最低消費" in error_panel(page.text)
    # The code input is empty and focused for the next scan; the total is kept.
    assert re.search(r'name="code" class="pos-code" value=""\s+autofocus', page.text)
    assert 'name="total" class="pos-total-input" value="200"' in page.text


# --- voids ---------------------------------------------------------------------------------

def test_void_from_the_success_screen_within_the_window(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    success = redeem_through_page(cashier_client, coupon.code or "")
    action = re.search(r'action="(/pos/redemptions/\w+/void)"', success.text)
    assert action
    csrf = csrf_from(success.text)
    no_reason = cashier_client.post(action.group(1), data={"csrf_token": csrf, "reason": " "})
    assert no_reason.status_code == 422
    assert "原因" in no_reason.text
    voided = cashier_client.post(action.group(1), data={"csrf_token": csrf,
                                                        "reason": "掃錯券"})
    assert voided.status_code == 200
    assert 'class="pos-result pos-voided"' in voided.text
    assert "掃錯券" in voided.text
    assert "已作廢" in voided.text  # the flash
    assert campaign_of(session, campaign).redeemed_count == 0
    stored = session.get(Coupon, (tenant.id, coupon.id))
    assert stored is not None
    assert stored.status == CouponStatus.claimed
    # The coupon can be used again.
    assert "pos-success" in redeem_through_page(cashier_client, coupon.code or "").text


def test_void_from_todays_list_and_not_after_the_window(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant, quota=5)
    first = claim_for(session, tenant, campaign, phone="0911-111-111")
    second = claim_for(session, tenant, campaign, phone="0922-222-222")
    one = redeem_through_page(cashier_client, first.code or "")
    redeem_through_page(cashier_client, second.code or "")
    one_id = str(one.url).rsplit("/", 1)[1]
    scan = cashier_client.get("/pos")
    response = cashier_client.post(f"/pos/redemptions/{one_id}/void", data={
        "csrf_token": csrf_from(scan.text), "reason": "wrong basket", "back": "list"},
        follow_redirects=False)
    assert response.headers["location"] == "/pos?done=pos_voided"
    listed = cashier_client.get(response.headers["location"])
    assert 'class="notice ok pos-flash"' in listed.text
    assert re.search(rf'<li class="voided" data-redemption="{one_id}">', listed.text)

    # Past the window: no void button, and the service says until when it was possible.
    fresh(session)
    later = session.scalars(select(Redemption).where(
        Redemption.tenant_id == tenant.id, Redemption.id != one_id)).one()
    later.redeemed_at = utcnow() - timedelta(
        minutes=get_settings().redemption_void_minutes + 1)
    session.commit()
    receipt = cashier_client.get(f"/pos/redemptions/{later.id}")
    assert f'action="/pos/redemptions/{later.id}/void"' not in receipt.text
    english(cashier_client)
    late = cashier_client.post(f"/pos/redemptions/{later.id}/void", data={
        "csrf_token": csrf_from(receipt.text), "reason": "too late"})
    assert late.status_code == 409
    assert "can be voided within" in unescape(late.text)


# --- abuse -------------------------------------------------------------------------------

def test_guessing_codes_is_rate_limited(
        cashier_client: TestClient, shop: tuple[Tenant, Store, StaffUser]) -> None:
    english(cashier_client)
    limit = get_settings().pos_guess_limit
    for n in range(limit):
        assert check(cashier_client, f"GUESS-{n:04d}").status_code == 404
    blocked = check(cashier_client, "GUESS-9999")
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    panel = error_panel(blocked.text)
    assert panel.startswith("rate_limited:")
    assert "Too many failed attempts" in panel


def test_posts_without_csrf_are_refused(
        cashier_client: TestClient, session: Session,
        shop: tuple[Tenant, Store, StaffUser]) -> None:
    tenant, _, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    fields = confirm_fields(check(cashier_client, coupon.code or "").text)
    assert cashier_client.post("/pos/check", data={"code": coupon.code or "",
                                                   "total": "500"}).status_code == 403
    forged = {**fields, "csrf_token": "forged"}
    assert cashier_client.post("/pos/redeem", data=forged).status_code == 403
    del fields["csrf_token"]
    assert cashier_client.post("/pos/redeem", data=fields).status_code == 403
    assert campaign_of(session, campaign).redeemed_count == 0


def test_english_on_request(cashier_client: TestClient) -> None:
    page = cashier_client.get("/pos?lang=en")
    assert "Scan or type the coupon code" in page.text
    assert "Basket total (NT$)" in page.text
    assert '<html lang="en">' in page.text


# --- helpers -----------------------------------------------------------------------------

@pytest.mark.parametrize(("phone", "shown"), [
    ("+886912345678", "0912-***-678"),
    ("+886227201234", "02-27**-*234"),
])
def test_phones_are_masked(phone: str, shown: str) -> None:
    assert mask_phone(phone) == shown


@pytest.mark.parametrize(("typed", "minor"), [
    ("350", 35000), ("1,280", 128000), ("NT$ 99.5", 9950), ("３５０", 35000), ("0", 0),
])
def test_totals_are_read_in_major_units(typed: str, minor: int) -> None:
    assert parse_total(typed, "TWD") == minor


@pytest.mark.parametrize("typed", ["", "abc", "-5", "1e400", "NaN", "Infinity"])
def test_bad_totals_are_refused(typed: str) -> None:
    with pytest.raises(BadInput):
        parse_total(typed, "TWD")
