"""The loyalty pages through their real forms: program settings, the daily job, the liability
report, the 360 page's points and risk forms, risk badges, the /pos member panel and the
wallet's member card. Permissions, CSRF, refusals shown beside their field with the input
kept, and double submits that change things once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from omniloop.campaigns import claims
from omniloop.core.clock import to_local, utcnow
from omniloop.core.db import Session
from omniloop.core.ratelimit import MemoryRateLimiter, set_rate_limiter
from omniloop.customers.models import CustomerIdentity, IdentityKind
from omniloop.loyalty import risk
from omniloop.loyalty.ledger import Source, adjust_points, balance_of, credit
from omniloop.loyalty.member_card import member_token
from omniloop.loyalty.models import BlacklistEntry, EntryKind, NoShow, NoShowKind
from omniloop.loyalty.program import get_program, stored_program
from omniloop.loyalty.risk import blacklist, mark_no_show
from omniloop.orders.models import Order
from omniloop.orders.schemas import OrderIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, StaffUser, Store, Tenant
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import fresh, make_staff, make_store, make_tenant
from tests.web.admin_helpers import csrf_from, login

PHONE = "0912-345-678"
_HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


@pytest.fixture(autouse=True)
def _limiter() -> Iterator[None]:
    set_rate_limiter(MemoryRateLimiter())
    yield
    set_rate_limiter(None)


@pytest.fixture
def shop(session: Session) -> tuple[Tenant, Store]:
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店")
    return tenant, store


def staff_client(client: TestClient, session: Session, tenant: Tenant, role: Role,
                 stores: list[Store] | None = None) -> StaffUser:
    member = make_staff(session, tenant, role, stores_=stores)
    assert login(client, member.email).status_code == 303
    return member


def customer_with_points(session: Session, tenant: Tenant, points: int = 500,
                         name: str = "林小姐", phone: str = PHONE) -> str:
    """A customer (by a purchase with their phone) holding exactly `points` points."""
    fresh(session)
    placed, _ = ingest_order(session, system_actor(tenant.id), OrderIn.model_validate({
        "external_id": f"SEED-{phone}", "identities": [{"kind": "phone", "value": phone}],
        "traits": {"name": name},
        "lines": [{"sku": "CF-LATTE", "quantity": 1, "unit_price_minor": 100}],
        "paid_at": (utcnow() - timedelta(days=1)).isoformat()}))
    customer = placed.customer_id
    assert customer is not None
    if points:
        credit(session, system_actor(tenant.id), customer, points, EntryKind.adjust,
               f"seed:{customer}", Source(reason="seed"),
               expires_at=utcnow() + timedelta(days=20))
    session.commit()
    return customer


def form_fields(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to `action`."""
    part = html.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return {name: unescape(value) for name, value in _HIDDEN.findall(part)}


def settings_form(html: str) -> dict[str, Any]:
    """Every field of the settings form as the browser would send it."""
    form = html.split('action="/admin/loyalty" class="stack', 1)[1].split("</form>", 1)[0]
    data: dict[str, Any] = {}
    for name, value in re.findall(r'<input (?:type="hidden" )?name="(\w+)" value="([^"]*)"',
                                  form):
        data.setdefault(name, []).append(unescape(value))
    for name, body in re.findall(r'<select name="(\w+)".*?>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        data.setdefault(name, []).append(chosen.group(1) if chosen else "")
    if 'name="enabled" value="true" checked' in form:
        data["enabled"] = "true"
    return {k: v[0] if isinstance(v, list) and len(v) == 1 and not k.startswith("tier_")
            else v for k, v in data.items()}


def error_of(html: str, field: str) -> str:
    match = re.search(rf'<span class="field-error[^"]*" id="error-{re.escape(field)}">(.*?)</span>',
                      html, re.S)
    assert match, f"no error shown for {field}"
    return unescape(match.group(1))


# --- program settings ------------------------------------------------------------------------

def test_settings_render_in_both_languages_and_save(client: TestClient, session: Session,
                                                    shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    gift = make_campaign(session, tenant, name="生日蛋糕券")
    staff_client(client, session, tenant, Role.owner)
    page = client.get("/admin/loyalty")
    assert page.status_code == 200
    assert "集點計畫" in page.text
    assert 'href="/admin/loyalty"' in page.text  # the nav entry
    assert 'name="earn_amount" value="100"' in page.text  # NT$100 in major units
    assert 'name="max_share" value="50"' in page.text
    assert "生日蛋糕券" in page.text  # the brand's campaigns for birthday coupons
    english = client.get("/admin/loyalty?lang=en").text
    assert "Loyalty program" in english
    assert "Run the daily job now" in english

    data = settings_form(page.text)
    data.update(earn_points="2", earn_amount="50", max_share="30", point_value="0.5",
                expiry_months="6", no_show_penalty_points="20")
    data["tier_name"] = ["會員", "金卡", "", ""]
    data["tier_code"] = ["member", "gold", "", ""]
    data["tier_threshold"] = ["0", "10,000", "", ""]
    data["tier_multiplier"] = ["1", "1.5", "", ""]
    data["tier_campaign"] = ["", gift.id, "", ""]
    saved = client.post("/admin/loyalty", data=data, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/admin/loyalty?done=program_saved"
    fresh(session)
    program = get_program(session, tenant.id)
    assert (program.earn_points, program.earn_unit_minor) == (2, 5000)
    assert program.max_redeem_share_bp == 3000
    assert program.point_value_minor == 50
    assert program.expiry_months == 6
    assert program.no_show_penalty_points == 20
    assert program.tiers == [
        {"code": "member", "name": "會員", "threshold_minor": 0, "multiplier_bp": 10000,
         "birthday_campaign_id": None},
        {"code": "gold", "name": "金卡", "threshold_minor": 1000000, "multiplier_bp": 15000,
         "birthday_campaign_id": gift.id}]
    again = client.get(saved.headers["location"] + "&lang=zh_TW").text
    assert "集點計畫已儲存" in again
    assert 'name="tier_multiplier" value="1.5"' in again


def test_bad_settings_are_refused_beside_the_field_and_kept(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    staff_client(client, session, tenant, Role.marketer)
    client.get("/admin/loyalty?lang=en")
    data = settings_form(client.get("/admin/loyalty").text)
    data.update(earn_amount="abc", max_share="120")
    refused = client.post("/admin/loyalty", data=data)
    assert refused.status_code == 422
    assert error_of(refused.text, "earn_amount") == "Enter an amount above 0, like 100."
    assert "from 0 to 100%" in error_of(refused.text, "max_share")
    assert 'name="earn_amount" value="abc"' in refused.text
    assert 'name="max_share" value="120"' in refused.text
    # The service's own refusals: two tiers with one code; no tier at 0.
    data = settings_form(client.get("/admin/loyalty").text)
    data["tier_code"] = ["member", "member", "gold", "", ""]
    same = client.post("/admin/loyalty", data=data)
    assert same.status_code == 422
    assert error_of(same.text, "tiers") == "Two tiers have the same code."
    assert same.text.count('name="tier_code" value="member"') == 2  # kept as typed
    data = settings_form(client.get("/admin/loyalty").text)
    data["tier_threshold"] = ["1", "5000", "15000", "", ""]
    base = client.post("/admin/loyalty", data=data)
    assert "must start at 0" in error_of(base.text, "tiers")
    data = settings_form(client.get("/admin/loyalty").text)
    data["tier_code"] = ["Member!", "silver", "gold", "", ""]
    data["tier_multiplier"] = ["1", "1.25", "lots", "", ""]
    cells = client.post("/admin/loyalty", data=data)
    assert "lower-case letters" in error_of(cells.text, "tiers.0.code")
    assert "multiplier from 0 to 10" in error_of(cells.text, "tiers.2.multiplier")
    # A campaign of another brand (or none) as a birthday coupon: refused at the table.
    foreign = make_campaign(session, make_tenant(session))
    data = settings_form(client.get("/admin/loyalty").text)
    data["tier_campaign"] = ["", foreign.id, "", "", ""]
    other = client.post("/admin/loyalty", data=data)
    assert other.status_code == 422
    assert error_of(other.text, "tiers") == "Choose a birthday campaign from the list."
    fresh(session)
    assert get_program(session, tenant.id).earn_unit_minor == 10000  # nothing saved


def test_who_may_see_and_change_the_program(client: TestClient, session: Session,
                                            shop: tuple[Tenant, Store]) -> None:
    tenant, store = shop
    staff_client(client, session, tenant, Role.cashier, [store])
    assert client.get("/admin/loyalty").status_code == 403
    assert client.get("/admin/loyalty/liability").status_code == 403
    assert 'href="/admin/loyalty"' not in client.get("/admin").text
    csrf = csrf_from(client.get("/admin").text)
    assert client.post("/admin/loyalty", data={"csrf_token": csrf}).status_code == 403
    assert client.post("/admin/loyalty/daily", data={"csrf_token": csrf}).status_code == 403

    manager = make_staff(session, tenant, Role.store_manager, stores_=[store])
    login(client, manager.email)
    page = client.get("/admin/loyalty")
    assert page.status_code == 200  # reads (campaigns.read) ...
    assert re.search(r'name="earn_points" value="1"[^>]* disabled>', page.text)
    assert "儲存集點計畫" not in page.text  # ... but every field is read-only
    assert "/admin/loyalty/daily" not in page.text
    data = settings_form(page.text)
    data["csrf_token"] = csrf_from(page.text)
    assert client.post("/admin/loyalty", data=data).status_code == 403


def test_forms_without_the_csrf_token_change_nothing(client: TestClient, session: Session,
                                                     shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    customer = customer_with_points(session, tenant)
    staff_client(client, session, tenant, Role.owner)
    data = settings_form(client.get("/admin/loyalty").text)
    data.update(earn_amount="1", csrf_token="forged")
    assert client.post("/admin/loyalty", data=data).status_code == 403
    assert client.post(f"/admin/customers/{customer}/points/adjust", data={
        "points": "99", "reason": "x", "key": "k" * 20}).status_code == 403
    fresh(session)
    assert get_program(session, tenant.id).earn_unit_minor == 10000
    assert balance_of(session, tenant.id, customer) == 500


def test_the_daily_job_button_shows_what_it_did(client: TestClient, session: Session,
                                                shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    customer = customer_with_points(session, tenant, points=0)
    fresh(session)
    credit(session, system_actor(tenant.id), customer, 40, EntryKind.adjust, "old-lot",
           Source(reason="old"), expires_at=utcnow() - timedelta(days=1))
    session.commit()
    staff_client(client, session, tenant, Role.owner)
    page = client.get("/admin/loyalty?lang=en")
    ran = client.post("/admin/loyalty/daily", data={"csrf_token": csrf_from(page.text)},
                      follow_redirects=False)
    assert ran.status_code == 303
    shown = client.get(ran.headers["location"]).text
    assert "Daily job done: 1 lots expired, 1 members moved up" in shown
    fresh(session)
    assert balance_of(session, tenant.id, customer) == 0
    # A crafted link shows numbers at most, never text.
    assert "Daily job" not in client.get("/admin/loyalty?daily=<b>hi</b>").text


def test_liability_page_and_csv(client: TestClient, session: Session,
                                shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    customer_with_points(session, tenant, points=500)
    customer_with_points(session, tenant, points=120, phone="0987-654-321", name="王先生")
    staff_client(client, session, tenant, Role.marketer)
    page = client.get("/admin/loyalty/liability")
    assert page.status_code == 200
    assert 'data-figure="points"><span class="figure">620<' in page.text
    assert 'data-figure="members"><span class="figure">2<' in page.text
    month = to_local(utcnow() + timedelta(days=20), tenant.timezone).strftime("%Y-%m")
    assert f'data-month="{month}"' in page.text
    assert 'class="bar" style="width: 100.0%"' in page.text
    csv = client.get("/admin/loyalty/liability.csv")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]
    lines = csv.text.strip().splitlines()
    assert lines[0] == "expiry_month,points,value,currency,lots"
    assert lines[1] == f"{month},620,620.00,TWD,2"
    assert lines[-1] == "total,620,620.00,TWD,2"


# --- the 360 page --------------------------------------------------------------------------

def test_manual_adjustment_once_per_form_with_a_reason(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    customer = customer_with_points(session, tenant, points=100)
    staff_client(client, session, tenant, Role.marketer)
    page = client.get(f"/admin/customers/{customer}")
    assert "調整點數" in page.text
    action = f"/admin/customers/{customer}/points/adjust"
    fields = form_fields(page.text, action)
    done = client.post(action, data={**fields, "points": "+50", "reason": "客訴補償"},
                       follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].endswith("?done=points_adjusted#section-points")
    again = client.post(action, data={**fields, "points": "+50", "reason": "客訴補償"},
                        follow_redirects=False)
    assert again.status_code == 303  # the same form twice: one adjustment
    fresh(session)
    assert balance_of(session, tenant.id, customer) == 150
    shown = client.get(done.headers["location"]).text
    assert "點數已調整" in shown
    assert "客訴補償" in shown

    fields = form_fields(shown, action)
    no_reason = client.post(action, data={**fields, "points": "-20", "reason": " "})
    assert no_reason.status_code == 422
    assert 'name="points" value="-20"' in no_reason.text
    assert "請填寫原因" in no_reason.text
    too_much = client.post(action, data={**fields, "points": "-999", "reason": "錯誤"})
    assert too_much.status_code == 409
    assert "點數不足" in too_much.text
    assert 'name="reason" value="錯誤"' in too_much.text
    assert "<details class=\"sub-form\" id=\"points-adjust\" open>" in too_much.text
    fresh(session)
    assert balance_of(session, tenant.id, customer) == 150


def test_cashiers_cannot_adjust_points(client: TestClient, session: Session,
                                       shop: tuple[Tenant, Store]) -> None:
    tenant, store = shop
    customer = customer_with_points(session, tenant)
    staff_client(client, session, tenant, Role.cashier, [store])
    page = client.get(f"/admin/customers/{customer}")
    assert page.status_code == 200
    assert "/points/adjust" not in page.text
    assert "/blacklist" not in page.text  # nor blacklist
    assert f"/admin/customers/{customer}/no-shows" in page.text  # the counter marks no-shows
    refused = client.post(f"/admin/customers/{customer}/points/adjust", data={
        "csrf_token": csrf_from(page.text), "points": "5", "reason": "x", "key": "k" * 20})
    assert refused.status_code == 403


def test_no_shows_marked_and_cancelled_from_the_360_page(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, store = shop
    customer = customer_with_points(session, tenant, points=100)
    fresh(session)
    stored_program(session, tenant.id).no_show_penalty_points = 30
    session.commit()
    staff_client(client, session, tenant, Role.owner)
    page = client.get(f"/admin/customers/{customer}?lang=en")
    action = f"/admin/customers/{customer}/no-shows"
    csrf = csrf_from(page.text)
    later = to_local(utcnow() + timedelta(hours=3), tenant.timezone).strftime("%Y-%m-%dT%H:%M")
    future = client.post(action, data={"csrf_token": csrf, "kind": "booking",
                                       "reference": "BK-1", "due_at": later,
                                       "store_id": store.id})
    assert future.status_code == 422
    assert "only once its time has passed" in future.text
    assert 'name="reference" value="BK-1"' in future.text
    earlier = to_local(utcnow() - timedelta(hours=3), tenant.timezone).strftime("%Y-%m-%dT%H:%M")
    marked = client.post(action, data={"csrf_token": csrf, "kind": "booking",
                                       "reference": "BK-1", "due_at": earlier,
                                       "store_id": store.id, "note": "no call"},
                         follow_redirects=False)
    assert marked.status_code == 303
    shown = client.get(marked.headers["location"]).text
    assert "The no-show was recorded." in shown
    assert 'data-flag="watch"' in shown  # the flag at the top of the page
    assert "BK-1" in shown
    fresh(session)
    assert balance_of(session, tenant.id, customer) == 70
    no_show = session.scalars(select(NoShow)).one()
    twice = client.post(action, data={"csrf_token": csrf, "kind": "booking",
                                      "reference": "BK-1", "due_at": earlier},
                        follow_redirects=False)
    assert twice.headers["location"].startswith(f"/admin/customers/{customer}?done=no_show_known")
    cancelled = client.post(f"/admin/no-shows/{no_show.id}/cancel", data={"csrf_token": csrf},
                            follow_redirects=False)
    assert cancelled.status_code == 303
    fresh(session)
    assert balance_of(session, tenant.id, customer) == 100
    after = client.get(cancelled.headers["location"]).text
    assert 'data-flag="watch"' not in after
    assert "Cancelled" in after


def test_blacklist_form_and_flags_wherever_staff_see_customers(
        client: TestClient, session: Session, shop: tuple[Tenant, Store],
        monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, store = shop
    customer = customer_with_points(session, tenant)
    other = customer_with_points(session, tenant, phone="0987-654-321", name="王先生")
    staff_client(client, session, tenant, Role.owner)
    page = client.get(f"/admin/customers/{customer}?lang=en")
    action = f"/admin/customers/{customer}/blacklist"
    csrf = csrf_from(page.text)
    empty = client.post(action, data={"csrf_token": csrf, "reason": "", "until": "x"})
    assert empty.status_code == 422
    assert "Give a reason" in empty.text
    assert "Enter the last day" in empty.text
    yesterday = (to_local(utcnow(), tenant.timezone).date() - timedelta(days=1)).isoformat()
    past = client.post(action, data={"csrf_token": csrf, "reason": "惡意訂位",
                                     "until": yesterday})
    assert past.status_code == 422
    assert "end date in the future" in past.text
    assert 'name="reason" value="惡意訂位"' in past.text
    last_day = (to_local(utcnow(), tenant.timezone).date() + timedelta(days=30)).isoformat()
    done = client.post(action, data={"csrf_token": csrf, "reason": "惡意訂位", "until": last_day},
                       follow_redirects=False)
    assert done.status_code == 303
    fresh(session)
    entry = session.scalars(select(BlacklistEntry)).one()
    ends_local = to_local(entry.ends_at, tenant.timezone)
    assert (ends_local.date().isoformat(), ends_local.hour) == (
        (to_local(utcnow(), tenant.timezone).date() + timedelta(days=31)).isoformat(), 0)

    # The search list asks for all its rows' flags at once.
    calls: list[list[str]] = []
    real = risk.flags_for

    def counting(session_: Session, tenant_id: str, ids: list[str], **kw: Any) -> Any:
        calls.append(list(ids))
        return real(session_, tenant_id, ids, **kw)

    monkeypatch.setattr("omniloop.loyalty.pages.flags_for", counting)
    listing = client.get("/admin/customers?lang=en").text
    assert len(calls) == 1
    assert set(calls[0]) == {customer, other}
    assert listing.count('data-flag="blacklisted"') == 1
    assert ">Blacklisted</span>" in listing
    assert "惡意訂位" in listing  # the reason, on hover
    profile = client.get(f"/admin/customers/{customer}").text
    assert 'class="notice error risk-flag" data-flag="blacklisted"' in profile
    lift = client.post(f"/admin/blacklist/{entry.id}/lift", data={"csrf_token": csrf},
                       follow_redirects=False)
    assert lift.status_code == 303
    assert 'data-flag="blacklisted"' not in client.get("/admin/customers").text


# --- /pos member panel ---------------------------------------------------------------------

@pytest.fixture
def counter(client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> TestClient:
    tenant, store = shop
    staff_client(client, session, tenant, Role.cashier, [store])
    return client


def scan(client: TestClient, token: str) -> Response:
    page = client.get("/pos/member")
    return client.post("/pos/member/scan", data={"csrf_token": csrf_from(page.text),
                                                 "token": token}, follow_redirects=False)


def test_member_panel_scan_redeem_purchase_and_card(
        counter: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, store = shop
    customer = customer_with_points(session, tenant, points=500)
    fresh(session)
    mark_no_show(session, system_actor(tenant.id), customer, kind=NoShowKind.pickup,
                 reference="PU-9", due_at=utcnow() - timedelta(days=1))
    session.commit()
    assert "會員卡" in counter.get("/pos").text  # the way in from the coupon screen
    scanned = scan(counter, member_token(tenant.id, customer))
    assert scanned.status_code == 303
    panel = counter.get(scanned.headers["location"])
    assert panel.status_code == 200
    assert "林小姐" in panel.text
    assert "0912-***-678" in panel.text or "***" in panel.text
    assert 'data-balance>500<' in panel.text
    assert 'data-flag="watch"' in panel.text

    fields = form_fields(panel.text, "/pos/member/redeem")
    over = counter.post("/pos/member/redeem", data={**fields, "total": "300",
                                                    "points": "200"})
    assert over.status_code == 409
    assert "最多只能折抵訂單金額的 50.0%" in error_of(over.text, "points")
    assert 'name="points" class="pos-total-input" value="200"' in over.text
    redeemed = counter.post("/pos/member/redeem", data={**fields, "total": "300",
                                                        "points": "150"},
                            follow_redirects=False)
    assert redeemed.status_code == 303
    twice = counter.post("/pos/member/redeem", data={**fields, "total": "300", "points": "150"},
                         follow_redirects=False)
    assert twice.status_code == 303
    shown = counter.get(redeemed.headers["location"]).text
    assert 'data-discount>$150' in shown
    assert 'data-to-pay>$150' in shown
    assert 'data-balance>350<' in shown
    fresh(session)
    assert balance_of(session, tenant.id, customer) == 350

    sale = form_fields(shown, "/pos/member/purchase")
    assert sale["points_entry"]
    bad = counter.post("/pos/member/purchase", data={**sale, "amount": "abc"})
    assert bad.status_code == 422
    assert 'name="amount" class="pos-total-input" value="abc"' in bad.text
    under = counter.post("/pos/member/purchase", data={**sale, "amount": "100"})
    assert under.status_code == 422
    assert "已用點數折抵 $150" in error_of(under.text, "amount")
    huge = counter.post("/pos/member/purchase", data={**sale, "amount": "30,000,000"})
    assert huge.status_code == 422  # beyond an order line: a message, not a 500
    recorded = counter.post("/pos/member/purchase", data={**sale, "amount": "300"},
                            follow_redirects=False)
    assert recorded.status_code == 303
    again = counter.post("/pos/member/purchase", data={**sale, "amount": "300"},
                         follow_redirects=False)
    assert again.headers["location"] == recorded.headers["location"]
    # The redeemed page reloaded (a new form key): still one order for that redemption.
    reloaded = form_fields(counter.get(redeemed.headers["location"]).text,
                           "/pos/member/purchase")
    assert reloaded["key"] != sale["key"]
    third = counter.post("/pos/member/purchase", data={**reloaded, "amount": "300"},
                         follow_redirects=False)
    assert third.headers["location"] == recorded.headers["location"]
    result = counter.get(recorded.headers["location"]).text
    assert "已記錄消費：+1 點" in result  # NT$150 paid → 1 point per NT$100
    fresh(session)
    orders = session.scalars(select(Order).where(Order.source == "pos")).all()
    assert len(orders) == 1
    assert (orders[0].total_minor, orders[0].discount_minor) == (15000, 15000)
    assert orders[0].store_id == store.id
    assert orders[0].customer_id == customer
    assert balance_of(session, tenant.id, customer) == 351

    card_fields = form_fields(result, "/pos/member/card")
    bound = counter.post("/pos/member/card", data={**card_fields, "card_number": "8800123"},
                         follow_redirects=False)
    assert bound.status_code == 303
    assert "卡號已綁定" in counter.get(bound.headers["location"]).text
    fresh(session)
    assert session.scalar(select(CustomerIdentity.customer_id).where(
        CustomerIdentity.kind == IdentityKind.pos_card)) == customer
    other = customer_with_points(session, tenant, points=0, phone="0987-654-321")
    theirs = scan(counter, member_token(tenant.id, other))
    taken = counter.post("/pos/member/card", data={
        **form_fields(counter.get(theirs.headers["location"]).text, "/pos/member/card"),
        "card_number": "8800123"})
    assert taken.status_code == 409
    assert "已屬於另一位顧客" in taken.text


def test_member_panel_refuses_old_and_forged_cards_and_tickets(
        counter: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    customer = customer_with_points(session, tenant)
    old = scan(counter, member_token(tenant.id, customer, now=utcnow() - timedelta(minutes=6)))
    assert old.status_code == 400
    assert 'data-code="token_expired"' in old.text
    forged = scan(counter, "not a token")
    assert forged.status_code == 400
    assert 'data-code="token_invalid"' in forged.text
    ticket = counter.get("/pos/member?m=forged")
    assert ticket.status_code == 400
    assert 'data-code="ticket_expired"' in ticket.text
    # A member QR scanned into the coupon box goes on to the member panel.
    page = counter.get("/pos")
    handed = counter.post("/pos/check", data={"csrf_token": csrf_from(page.text),
                                              "code": member_token(tenant.id, customer),
                                              "total": "100"}, follow_redirects=False)
    assert handed.status_code == 307
    assert handed.headers["location"] == "/pos/member/scan"
    followed = counter.post("/pos/check", data={"csrf_token": csrf_from(page.text),
                                                "code": member_token(tenant.id, customer),
                                                "total": "1,280"})
    assert "林小姐" in followed.text
    # The basket total typed before the scan fills the panel's forms.
    assert 'name="total" class="pos-total-input" value="1280"' in followed.text
    assert 'name="amount" class="pos-total-input" value="1280"' in followed.text


def test_coupon_screens_at_the_counter_show_the_risk_flag(
        counter: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    assert coupon.customer_id is not None
    fresh(session)
    blacklist(session, system_actor(tenant.id), coupon.customer_id, reason="惡意訂位",
              ends_at=utcnow() + timedelta(days=10))
    session.commit()
    page = counter.get("/pos")
    confirm = counter.post("/pos/check", data={"csrf_token": csrf_from(page.text),
                                               "code": coupon.code or "", "total": "500"})
    assert confirm.status_code == 200
    assert 'data-flag="blacklisted"' in confirm.text
    assert ">黑名單</span>" in confirm.text


# --- the wallet's member card --------------------------------------------------------------

def test_full_wallet_shows_the_member_card_and_renews_its_qr(
        client: TestClient, session: Session, shop: tuple[Tenant, Store]) -> None:
    tenant, _ = shop
    campaign = make_campaign(session, tenant)
    coupon = claim_for(session, tenant, campaign)
    customer = coupon.customer_id
    assert customer is not None
    fresh(session)
    adjust_points(session, system_actor(tenant.id), customer, 80, "welcome", key="w-1")
    session.commit()
    full = claims.wallet_token(tenant.id, customer)
    page = client.get(f"/c/{tenant.slug}/wallet/{full}")
    assert page.status_code == 200
    assert "data-member-card" in page.text
    assert "data-balance>80<" in page.text
    assert f"/c/{tenant.slug}/wallet/{full}/member-qr" in page.text
    fresh_qr = client.get(f"/c/{tenant.slug}/wallet/{full}/member-qr")
    assert fresh_qr.status_code == 200
    assert fresh_qr.headers["cache-control"] == "no-store"
    body = fresh_qr.json()
    assert body["expires_in"] == 300
    assert body["svg"].startswith("<svg")

    single = claims.wallet_token(tenant.id, customer, coupon.id)
    assert "data-member-card" not in client.get(f"/c/{tenant.slug}/wallet/{single}").text
    assert client.get(f"/c/{tenant.slug}/wallet/{single}/member-qr").status_code == 404
    assert client.get(f"/c/{tenant.slug}/wallet/garbage/member-qr").status_code == 404
    other = make_tenant(session)
    assert client.get(f"/c/{other.slug}/wallet/{full}/member-qr").status_code == 404
