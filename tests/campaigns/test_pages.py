"""The campaign admin pages through HTTP: list, create and edit forms, status buttons, the
campaign's page with its claim link and report, roles, languages and tenant isolation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import func, select

from omniloop.campaigns.models import Campaign, CampaignKind, CampaignStatus, CodeMode, Stacking
from omniloop.campaigns.redemption import redeem
from omniloop.campaigns.schemas import RedeemIn
from omniloop.core.db import Session
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Role, StaffUser, Store, Tenant
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import fresh, make_staff, make_store, make_tenant
from tests.web.admin_helpers import csrf_from, login


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return make_tenant(session, slug="beanhouse", name="豆留森林")


@pytest.fixture
def stores(session: Session, tenant: Tenant) -> list[Store]:
    return [make_store(session, tenant, code="TPE01", name="信義店"),
            make_store(session, tenant, code="TPE02", name="南京店")]


def sign_in(client: TestClient, session: Session, tenant: Tenant, role: Role,
            stores_: list[Store] | None = None) -> StaffUser:
    member = make_staff(session, tenant, role, stores_)
    assert login(client, member.email, brand=tenant.slug).status_code == 303
    return member


def post_form(client: TestClient, form_path: str, data: dict[str, Any],
              action: str | None = None) -> Response:
    """Open the page for its CSRF token, then post `data` as the browser would."""
    token = csrf_from(client.get(form_path).text)
    return client.post(action or form_path, data={"csrf_token": token, **data},
                       follow_redirects=False)


def form_data(stores: list[Store], **changes: Any) -> dict[str, Any]:
    """A full campaign form: 15% off lattes (up to NT$200), in Taipei time."""
    data: dict[str, Any] = {
        "name": "秋季拿鐵 85 折", "description": "拿鐵系列 85 折", "terms": "每人限用兩次",
        "kind": "percent_off", "value": "", "percent_off": "15", "max_discount": "200",
        "free_sku": "", "gift_name": "", "voucher_price": "",
        "starts_at": "2030-03-01T10:00", "ends_at": "2030-03-31T22:00",
        "validity": "days", "coupon_valid_days": "14", "coupon_valid_from": "",
        "coupon_valid_until": "", "store_ids": [stores[0].id], "weekdays": ["0", "1"],
        "hours_start": "14:00", "hours_end": "17:00", "skus": "cf-latte, CF-MOCHA，CF-LATTE",
        "categories": "咖啡", "min_spend": "300", "per_customer_limit": "2", "quota": "500",
        "budget": "20,000", "stacking": "combinable", "holdout_percent": "10",
        "claim_channels": ["line", "web"], "new_customers_only": "on", "code_mode": "unique",
        "shared_code": "", "code_pattern": "cafe-####-####",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def campaigns_of(session: Session, tenant: Tenant) -> list[Campaign]:
    fresh(session)
    return list(session.scalars(select(Campaign).where(Campaign.tenant_id == tenant.id)))


def error_of(html: str, field: str) -> str:
    match = re.search(rf'<span class="field-error" id="error-{field}">([^<]*)</span>', html)
    assert match, f"no error shown at {field}"
    return unescape(match.group(1))


def input_value(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}" value="([^"]*)"', html)
    assert match, f"no input {name}"
    return unescape(match.group(1))


# --- creating and editing -------------------------------------------------------------------

def test_marketer_creates_a_campaign_through_the_form(
        client: TestClient, session: Session, tenant: Tenant, stores: list[Store]) -> None:
    sign_in(client, session, tenant, Role.marketer)
    listing = client.get("/admin/campaigns")
    assert listing.status_code == 200
    assert 'href="/admin/campaigns/new"' in listing.text
    assert "目前還沒有活動。" in listing.text

    response = post_form(client, "/admin/campaigns/new", form_data(stores))
    assert response.status_code == 303, response.text
    [campaign] = campaigns_of(session, tenant)
    assert response.headers["location"] == f"/admin/campaigns/{campaign.id}?done=campaign_created"

    assert (campaign.name, campaign.kind, campaign.status) == (
        "秋季拿鐵 85 折", CampaignKind.percent_off, CampaignStatus.draft)
    assert (campaign.percent_off, campaign.max_discount_minor) == (15, 20000)
    assert campaign.value_minor is None  # only the fields of the chosen kind
    # Typed in Taipei time (UTC+8), stored in UTC.
    assert campaign.starts_at.replace(tzinfo=UTC) == datetime(2030, 3, 1, 2, 0, tzinfo=UTC)
    assert campaign.ends_at is not None
    assert campaign.ends_at.replace(tzinfo=UTC) == datetime(2030, 3, 31, 14, 0, tzinfo=UTC)
    assert (campaign.coupon_valid_days, campaign.coupon_valid_from) == (14, None)
    assert campaign.store_ids == [stores[0].id]
    assert campaign.weekdays == [0, 1]
    assert (campaign.hours_start, campaign.hours_end) == ("14:00", "17:00")
    assert campaign.skus == ["cf-latte", "CF-MOCHA", "CF-LATTE"]
    assert campaign.categories == ["咖啡"]
    assert (campaign.min_spend_minor, campaign.budget_minor) == (30000, 2000000)
    assert (campaign.per_customer_limit, campaign.quota) == (2, 500)
    assert (campaign.stacking, campaign.holdout_share_bp) == (Stacking.combinable, 1000)
    assert campaign.claim_channels == ["line", "web"]
    assert campaign.new_customers_only is True
    assert (campaign.code_mode, campaign.code_pattern) == (CodeMode.unique, "CAFE-####-####")

    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert "已建立活動草稿" in page.text
    assert 'data-status="draft"' in page.text
    assert 'data-action="launch"' in page.text
    assert "信義店" in page.text
    assert "星期一, 星期二" in page.text
    assert "2030-03-01 10:00" in page.text  # dates in the brand's time zone

    listing = client.get("/admin/campaigns")
    assert f'data-campaign="{campaign.id}"' in listing.text
    assert "秋季拿鐵 85 折" in listing.text


def test_validation_errors_name_the_field_and_keep_what_was_typed(
        client: TestClient, session: Session, tenant: Tenant, stores: list[Store]) -> None:
    sign_in(client, session, tenant, Role.owner)
    client.get("/admin?lang=zh-TW")

    # Errors found while reading the form: several at once, each at its field.
    response = post_form(client, "/admin/campaigns/new", form_data(
        stores, percent_off="150", min_spend="abc", holdout_percent="60", starts_at=""))
    assert response.status_code == 422
    html = response.text
    assert "尚未儲存任何變更" in html
    assert "1 到 100" in error_of(html, "percent_off")
    assert error_of(html, "min_spend")
    assert error_of(html, "holdout_percent")
    assert error_of(html, "starts_at")
    assert 'aria-invalid="true" aria-describedby="error-percent_off"' in html
    # What was typed stays, checkboxes included.
    assert input_value(html, "name") == "秋季拿鐵 85 折"
    assert input_value(html, "percent_off") == "150"
    assert input_value(html, "min_spend") == "abc"
    assert input_value(html, "skus") == "cf-latte, CF-MOCHA，CF-LATTE"
    assert f'value="{stores[0].id}" checked' in html
    assert f'value="{stores[1].id}" checked' not in html
    assert 'name="claim_channels" value="line" checked' in html

    # An error the service finds (the value a kind needs) shows at the form's field.
    response = post_form(client, "/admin/campaigns/new", form_data(
        stores, kind="amount_off", value=""))
    assert response.status_code == 422
    assert error_of(response.text, "value") == "請填寫優惠券的面額。"

    response = post_form(client, "/admin/campaigns/new", form_data(
        stores, ends_at="2030-02-01T10:00"))
    assert response.status_code == 422
    assert error_of(response.text, "ends_at") == "結束時間必須晚於開始時間。"
    assert campaigns_of(session, tenant) == []


def test_shared_code_taken_is_shown_at_the_code(
        client: TestClient, session: Session, tenant: Tenant, stores: list[Store]) -> None:
    make_campaign(session, tenant, code_mode="shared", shared_code="SPRING100")
    sign_in(client, session, tenant, Role.owner)
    client.get("/admin?lang=en")
    response = post_form(client, "/admin/campaigns/new", form_data(
        stores, code_mode="shared", shared_code="spring100"))
    assert response.status_code == 409
    assert "SPRING100" in error_of(response.text, "shared_code")
    assert input_value(response.text, "shared_code") == "spring100"
    assert len(campaigns_of(session, tenant)) == 1


def test_edit_shows_stored_values_and_saves_only_changes(
        client: TestClient, session: Session, tenant: Tenant, stores: list[Store]) -> None:
    campaign = make_campaign(session, tenant, launch=False, value_minor=12050,
                             starts_at="2030-03-01T02:00:00+00:00", ends_at=None,
                             min_spend_minor=50000,
                             holdout_share_bp=250, weekdays=[5, 6])
    sign_in(client, session, tenant, Role.marketer)
    edit = client.get(f"/admin/campaigns/{campaign.id}/edit")
    assert edit.status_code == 200
    assert input_value(edit.text, "value") == "120.5"
    assert input_value(edit.text, "min_spend") == "500"
    assert input_value(edit.text, "holdout_percent") == "2.5"
    assert input_value(edit.text, "starts_at") == "2030-03-01T10:00"
    assert 'name="weekdays" value="5" checked' in edit.text

    # The form as shown, with only the name and quota changed.
    fields: dict[str, Any] = {
        name: unescape(value)
        for name, value in re.findall(r'<input[^>]*name="(\w+)" value="([^"]*)"', edit.text)
        if name not in ("csrf_token", "validity", "code_mode", "weekdays", "store_ids",
                        "claim_channels")}
    fields.update(name="週末拿鐵", quota="300", kind="amount_off", validity="campaign",
                  code_mode="unique", weekdays=["5", "6"])
    response = post_form(client, f"/admin/campaigns/{campaign.id}/edit", fields)
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith("?done=campaign_saved")
    [stored] = campaigns_of(session, tenant)
    assert (stored.name, stored.quota, stored.value_minor, stored.min_spend_minor) == (
        "週末拿鐵", 300, 12050, 50000)
    assert stored.starts_at.replace(tzinfo=UTC) == datetime(2030, 3, 1, 2, 0, tzinfo=UTC)
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "campaign.update")
                            ).one()
    assert set(entry.details["changes"]) == {"name", "quota"}


def test_offer_is_locked_once_coupons_are_claimed(
        client: TestClient, session: Session, tenant: Tenant, stores: list[Store]) -> None:
    campaign = make_campaign(session, tenant)
    claim_for(session, tenant, campaign)
    sign_in(client, session, tenant, Role.owner)
    edit = client.get(f"/admin/campaigns/{campaign.id}/edit")
    assert re.search(r'<input name="value" value="100"[^>]* disabled', edit.text)
    # A browser does not send disabled fields; the stored offer stays, the quota changes.
    data = form_data(stores, kind=None, value=None, code_mode=None, quota="80",
                     starts_at=input_value(edit.text, "starts_at"),
                     ends_at=input_value(edit.text, "ends_at"), validity="campaign",
                     store_ids=[], weekdays=[], hours_start="", hours_end="", skus="",
                     categories="", min_spend="", claim_channels=[], new_customers_only=None,
                     code_pattern="####-####")
    response = post_form(client, f"/admin/campaigns/{campaign.id}/edit", data)
    assert response.status_code == 303, response.text
    [stored] = campaigns_of(session, tenant)
    assert (stored.kind, stored.value_minor, stored.quota) == (CampaignKind.amount_off, 10000, 80)


# --- status buttons -------------------------------------------------------------------------

def test_launch_pause_resume_and_end(client: TestClient, session: Session, tenant: Tenant,
                                     stores: list[Store]) -> None:
    campaign = make_campaign(session, tenant, launch=False)
    sign_in(client, session, tenant, Role.marketer)
    page_path = f"/admin/campaigns/{campaign.id}"

    def press(action: str, expect: str) -> str:
        response = post_form(client, page_path, {}, action=f"{page_path}/{action}")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"{page_path}?done={expect}"
        return client.get(response.headers["location"]).text

    page = press("launch", "campaign_launched")
    assert "活動已上架。" in page
    assert 'data-status="active"' in page
    assert 'data-action="pause"' in page
    assert 'data-action="launch"' not in page
    page = press("pause", "campaign_paused")
    assert campaigns_of(session, tenant)[0].status == CampaignStatus.paused
    assert 'data-status="paused"' in page
    page = press("launch", "campaign_resumed")
    assert 'data-status="active"' in page
    page = press("end", "campaign_ended")
    assert campaigns_of(session, tenant)[0].status == CampaignStatus.ended
    assert "data-action=" not in page
    assert f'href="{page_path}/edit"' not in page

    # Pressing a button the page no longer shows: refused on the page, nothing changes.
    again = post_form(client, page_path, {}, action=f"{page_path}/launch")
    assert again.status_code == 409
    assert 'class="notice error"' in again.text
    assert "已結束" in again.text
    actions = session.scalars(select(AuditEntry.action).where(
        AuditEntry.entity_id == campaign.id).order_by(AuditEntry.at)).all()
    assert actions == ["campaign.create", "campaign.launch", "campaign.pause",
                       "campaign.launch", "campaign.end"]


def test_launch_refusal_names_the_reason(client: TestClient, session: Session,
                                         tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant, launch=False,
                             starts_at="2020-01-01T00:00:00+00:00",
                             ends_at="2020-02-01T00:00:00+00:00")
    sign_in(client, session, tenant, Role.owner)
    client.get("/admin?lang=en")
    path = f"/admin/campaigns/{campaign.id}"
    response = post_form(client, path, {}, action=f"{path}/launch")
    assert response.status_code == 422
    assert "The campaign&#39;s end has passed" in response.text
    assert campaigns_of(session, tenant)[0].status == CampaignStatus.draft


def test_status_buttons_need_csrf(client: TestClient, session: Session, tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant, launch=False)
    sign_in(client, session, tenant, Role.owner)
    response = client.post(f"/admin/campaigns/{campaign.id}/launch",
                           data={"csrf_token": "forged"}, follow_redirects=False)
    assert response.status_code == 403
    assert campaigns_of(session, tenant)[0].status == CampaignStatus.draft


# --- the campaign's page and report ----------------------------------------------------------

def test_campaign_page_shows_claim_link_qr_codes_and_report(
        client: TestClient, session: Session, tenant: Tenant, stores: list[Store]) -> None:
    campaign = make_campaign(session, tenant, name="週年慶")
    coupons = [claim_for(session, tenant, campaign, phone=f"0912-345-67{i}", channel=channel)
               for i, channel in enumerate(["line", "line", "web"])]
    result = redeem(session, system_actor(tenant.id), RedeemIn(
        code=coupons[0].code or "", store_code="TPE02", basket_total_minor=50000), "k1")
    session.commit()
    sign_in(client, session, tenant, Role.owner)

    html = client.get(f"/admin/campaigns/{campaign.id}").text
    url = f"http://testserver/c/beanhouse/claim/{campaign.id}"
    assert f'href="{url}"' in html
    assert re.search(r"<svg [^>]*class=\"qr\"", html)
    assert f'href="/admin/campaigns/{campaign.id}/codes"' in html
    assert re.search(r'data-figure="claimed"><span class="figure">3<', html)
    assert re.search(r'data-figure="redeemed"><span class="figure">1<', html)
    assert re.search(r'data-figure="conversion"><span class="figure">33.3%<', html)
    assert re.search(r'data-figure="discount"><span class="figure small">\$100<', html)
    assert re.search(r'<tr data-channel="line"><td>LINE</td><td class="num">2</td>'
                     r'<td class="num">1</td><td class="num">50.0%</td></tr>', html)
    assert '<tr data-store="TPE02"><td>南京店</td>' in html
    assert html.count("<rect ") == 1  # one day of redemptions: one bar
    assert f'data-redemption="{result.redemption.id}"' in html

    listing = client.get("/admin/campaigns").text
    row = listing.split(f'data-campaign="{campaign.id}"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'<td class="num"[^>]*>(\d+)</td>', row) == ["3", "1"]
    assert "進行中" in row


def test_list_filters_by_status_as_of_now(client: TestClient, session: Session,
                                          tenant: Tenant) -> None:
    draft = make_campaign(session, tenant, launch=False, name="草稿活動")
    running = make_campaign(session, tenant, name="進行中活動")
    later = make_campaign(session, tenant, name="下個月活動",
                          starts_at=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
                          ends_at=(datetime.now(UTC) + timedelta(days=60)).isoformat())
    sign_in(client, session, tenant, Role.owner)

    def shown(query: str) -> set[str]:
        page = client.get(f"/admin/campaigns{query}")
        assert page.status_code == 200
        return set(re.findall(r'data-campaign="(\w+)"', page.text))

    assert shown("") == {draft.id, running.id, later.id}
    assert shown("?status=draft") == {draft.id}
    assert shown("?status=active") == {running.id}
    assert shown("?status=scheduled") == {later.id}
    assert shown("?status=ended") == set()
    assert shown("?status=nonsense") == {draft.id, running.id, later.id}
    page = client.get("/admin/campaigns?status=scheduled").text
    assert 'data-status="scheduled" aria-current="page"' in page


# --- roles, languages, tenants ---------------------------------------------------------------

def test_store_manager_reads_but_cannot_change(client: TestClient, session: Session,
                                               tenant: Tenant, stores: list[Store]) -> None:
    campaign = make_campaign(session, tenant, launch=False)
    sign_in(client, session, tenant, Role.store_manager, [stores[0]])
    listing = client.get("/admin/campaigns")
    assert listing.status_code == 200
    assert 'href="/admin/campaigns"' in listing.text  # in the nav
    assert 'href="/admin/campaigns/new"' not in listing.text
    page = client.get(f"/admin/campaigns/{campaign.id}")
    assert page.status_code == 200
    assert "data-action=" not in page.text
    assert f"/admin/campaigns/{campaign.id}/edit" not in page.text
    assert "只計算您門市" in page.text  # the report covers their stores
    assert client.get("/admin/campaigns/new").status_code == 403
    assert client.get(f"/admin/campaigns/{campaign.id}/edit").status_code == 403
    token = csrf_from(page.text)
    for action in ("launch", "pause", "end", "edit"):
        response = client.post(f"/admin/campaigns/{campaign.id}/{action}",
                               data={"csrf_token": token, "name": "x"})
        assert response.status_code == 403, action
    assert client.post("/admin/campaigns/new", data={"csrf_token": token}).status_code == 403
    assert campaigns_of(session, tenant)[0].status == CampaignStatus.draft


def test_cashier_has_no_campaign_pages(client: TestClient, session: Session, tenant: Tenant,
                                       stores: list[Store]) -> None:
    campaign = make_campaign(session, tenant)
    sign_in(client, session, tenant, Role.cashier, [stores[0]])
    assert 'href="/admin/campaigns"' not in client.get("/admin").text
    assert client.get("/admin/campaigns").status_code == 403
    assert client.get(f"/admin/campaigns/{campaign.id}").status_code == 403


def test_nav_puts_campaigns_between_customers_and_imports(
        client: TestClient, session: Session, tenant: Tenant) -> None:
    sign_in(client, session, tenant, Role.owner)
    nav = client.get("/admin").text.split('<nav class="nav"', 1)[1].split("</nav>", 1)[0]
    paths = re.findall(r'href="(/admin[^"]*)"', nav)
    assert paths.index("/admin/customers") + 1 == paths.index("/admin/campaigns")
    assert paths.index("/admin/campaigns") < paths.index("/admin/imports")


def test_pages_in_english(client: TestClient, session: Session, tenant: Tenant,
                          stores: list[Store]) -> None:
    campaign = make_campaign(session, tenant, name="Anniversary")
    sign_in(client, session, tenant, Role.owner)
    listing = client.get("/admin/campaigns?lang=en").text
    assert "<h1>Campaigns</h1>" in listing
    assert "New campaign" in listing
    assert ">Running</span>" in listing
    assert "$100 off" in listing
    form = client.get("/admin/campaigns/new").text
    assert "Kind of offer" in form
    assert "Where and when it can be used" in form
    page = client.get(f"/admin/campaigns/{campaign.id}").text
    assert "O2O conversion" in page
    assert "Claim page" in page
    assert ">Pause</button>" in page
    zh = client.get(f"/admin/campaigns/{campaign.id}?lang=zh-TW").text
    assert "O2O 轉換率" in zh
    assert ">暫停</button>" in zh


def test_another_brands_campaign_is_not_found(client: TestClient, session: Session,
                                              tenant: Tenant) -> None:
    other = make_tenant(session, slug="teashop")
    theirs = make_campaign(session, other, launch=False)
    sign_in(client, session, tenant, Role.owner)
    assert client.get(f"/admin/campaigns/{theirs.id}").status_code == 404
    assert client.get(f"/admin/campaigns/{theirs.id}/edit").status_code == 404
    token = csrf_from(client.get("/admin/campaigns").text)
    response = client.post(f"/admin/campaigns/{theirs.id}/launch", data={"csrf_token": token})
    assert response.status_code == 404
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Campaign).where(
        Campaign.status != CampaignStatus.draft)) == 0
    assert theirs.id not in client.get("/admin/campaigns").text


def test_odd_numbers_are_refused_at_their_fields(client: TestClient, session: Session,
                                                 tenant: Tenant, stores: list[Store]) -> None:
    sign_in(client, session, tenant, Role.owner)
    response = post_form(client, "/admin/campaigns/new", form_data(
        stores, max_discount="sNaN", min_spend="1.234", budget="Infinity",
        holdout_percent="NaN", per_customer_limit="2.5", quota="0",
        starts_at="next tuesday", hours_start="25:00", weekdays=["7"], claim_channels=["LINE!"]))
    assert response.status_code == 422
    for field in ("max_discount", "min_spend", "budget", "holdout_percent", "per_customer_limit",
                  "quota", "starts_at", "hours_start", "weekdays", "claim_channels"):
        assert error_of(response.text, field), field
    assert campaigns_of(session, tenant) == []
    # Amounts with separators and a currency sign, and a fractional share, are fine.
    response = post_form(client, "/admin/campaigns/new", form_data(
        stores, max_discount="NT$1,200.5", holdout_percent="2.5%"))
    assert response.status_code == 303, response.text
    [campaign] = campaigns_of(session, tenant)
    assert (campaign.max_discount_minor, campaign.holdout_share_bp) == (120050, 250)
