"""The online → offline loop end to end, in Chromium, as three different people.

A marketer creates and launches a campaign in the admin; a customer opens its claim link on
a phone and claims it; a cashier types the code at /pos and redeems it; the campaign's
report shows one claim and one redemption.
"""

from __future__ import annotations

import re

import pytest

from omniloop.core.db import Session
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.tenancy.factories import make_staff, make_store, make_tenant

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_marketer_creates_customer_claims_cashier_redeems(live_server: str,
                                                          session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店")
    marketer = make_staff(session, tenant, Role.marketer, email="mkt@bean.tw")
    cashier = make_staff(session, tenant, Role.cashier, stores_=[store], email="pos@bean.tw")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            # 1. The marketer, at a desk.
            office = browser.new_context(viewport={"width": 1280, "height": 900},
                                         locale="zh-TW", timezone_id="Asia/Taipei")
            admin = office.new_page()
            admin.set_default_timeout(5000)
            sign_in(admin, marketer.email, f"{live_server}/admin/campaigns/new")
            expect(admin.locator("h1")).to_have_text("新增活動")
            admin.fill("input[name=name]", "冬季熱可可折 NT$50")
            admin.select_option("select[name=kind]", "amount_off")
            admin.fill("input[name=value]", "50")
            admin.fill("input[name=min_spend]", "150")
            admin.click("button[type=submit].primary")
            expect(admin.locator("h1 .badge")).to_have_text("草稿")
            admin.click("button[data-action=launch]")
            expect(admin.locator("h1 .badge")).to_have_text("進行中")
            claim_link = admin.locator(".claim-url a").get_attribute("href") or ""
            assert "/c/beanhouse/claim/" in claim_link
            campaign_page = admin.url

            # 2. The customer, on a phone, from a LINE post.
            phone_context = browser.new_context(viewport={"width": 390, "height": 844},
                                                locale="zh-TW", timezone_id="Asia/Taipei",
                                                has_touch=True, is_mobile=True)
            phone = phone_context.new_page()
            phone.set_default_timeout(5000)
            path = re.sub(r"^https?://[^/]+", "", claim_link)
            phone.goto(f"{live_server}{path}?channel=line&utm_source=line&utm_campaign=winter")
            expect(phone.locator("h1")).to_have_text("冬季熱可可折 NT$50")
            phone.fill("input[name=phone]", "0912 345 678")
            phone.locator("button[type=submit]").tap()
            phone.wait_for_url("**/wallet/**")
            code = phone.locator(".c-coupon [data-code]").first.inner_text().strip()
            assert code
            phone.screenshot(path=str(ARTIFACTS / "loop-wallet-phone.png"), full_page=True)

            # 3. The cashier, on the counter tablet, types the code the customer shows.
            counter = browser.new_context(viewport={"width": 1024, "height": 768},
                                          locale="zh-TW", timezone_id="Asia/Taipei")
            pos = counter.new_page()
            pos.set_default_timeout(5000)
            sign_in(pos, cashier.email, f"{live_server}/pos")
            pos.fill("#pos-total", "180")
            pos.locator("#pos-code").focus()
            pos.keyboard.type(code)
            pos.keyboard.press("Enter")
            expect(pos.locator(".pos-to-pay dd")).to_have_text("$130")
            pos.click("button.pos-go")
            expect(pos.locator(".pos-result.pos-success")).to_contain_text("已核銷")
            pos.screenshot(path=str(ARTIFACTS / "loop-pos-success.png"))

            # 4. The marketer's report: one claim through LINE, one redemption at 信義店.
            admin.goto(campaign_page)
            expect(admin.locator("[data-figure=claimed] .figure")).to_have_text("1")
            expect(admin.locator("[data-figure=redeemed] .figure")).to_have_text("1")
            expect(admin.locator("[data-figure=conversion] .figure")).to_contain_text("100")
            expect(admin.locator("table.by-channel tr[data-channel=line]")).to_be_visible()
            expect(admin.locator("table.by-store")).to_contain_text("信義店")
            admin.screenshot(path=str(ARTIFACTS / "loop-report.png"), full_page=True)
        finally:
            browser.close()
