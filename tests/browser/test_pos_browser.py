"""The cashier's page in a real browser at tablet and phone sizes, driven the way a
keyboard-wedge scanner drives it: characters typed into the focused input, then Enter.

Screenshots go to `test-artifacts/pos-*.png` for people to look at.
"""

from __future__ import annotations

from typing import Any

import pytest

from omniloop.core.db import Session
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import make_staff, make_store, make_tenant

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_cashier_scans_confirms_and_sees_a_used_code_refused(live_server: str,
                                                             session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店")
    cashier = make_staff(session, tenant, Role.cashier, stores_=[store],
                         email="cashier@bean.tw")
    campaign = make_campaign(session, tenant, name="秋季拿鐵折 NT$100", min_spend_minor=30000)
    first = claim_for(session, tenant, campaign, phone="0912-345-678")
    second = claim_for(session, tenant, campaign, phone="0922-333-444")
    assert first.code is not None
    assert second.code is not None
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1024, "height": 768},
                                          locale="zh-TW", timezone_id="Asia/Taipei",
                                          has_touch=True)
            page = context.new_page()
            page.set_default_timeout(5000)
            expect = sync_api.expect

            # Signed out: the login, then straight back to the counter.
            page.goto(f"{live_server}/pos")
            expect(page).to_have_url(f"{live_server}/admin/login?next=/pos")
            sign_in(page, cashier.email)
            expect(page).to_have_url(f"{live_server}/pos")
            expect(page.locator(".pos-store")).to_contain_text("信義店")
            code_input = page.locator("#pos-code")
            expect(code_input).to_be_focused()
            page.screenshot(path=str(ARTIFACTS / "pos-scan-1024.png"))

            # The basket total, then the scanner: it types the code and presses Enter.
            page.fill("#pos-total", "500")
            code_input.focus()
            page.keyboard.type(first.code)
            page.keyboard.press("Enter")
            expect(page.locator("h1.pos-offer-title")).to_be_visible()
            expect(page.locator(".pos-customer")).to_contain_text("0912-***-678")
            expect(page.locator(".pos-to-pay dd")).to_have_text("$400")
            page.screenshot(path=str(ARTIFACTS / "pos-confirm-1024.png"))

            page.click("button.pos-go")
            success = page.locator(".pos-result.pos-success")
            expect(success).to_contain_text("已核銷")
            expect(page.locator(".pos-facts")).to_contain_text(first.code)
            receipt_url = page.url
            page.screenshot(path=str(ARTIFACTS / "pos-success-1024.png"))

            # Next customer: back to the input, focused, ready for the scanner.
            page.click("a.pos-next")
            expect(code_input).to_be_focused()
            expect(page.locator(".pos-recent-list li")).to_have_count(1)
            page.fill("#pos-total", "500")
            code_input.focus()
            page.keyboard.type(first.code)
            page.keyboard.press("Enter")
            error = page.locator(".pos-result.pos-error")
            expect(error).to_have_attribute("data-code", "coupon_already_redeemed")
            expect(error).to_contain_text("信義店")
            expect(code_input).to_be_focused()
            expect(code_input).to_have_value("")
            page.screenshot(path=str(ARTIFACTS / "pos-error-1024.png"))

            # Other tablet sizes: nothing overflows sideways.
            for width, height in ((768, 1024), (1280, 800)):
                page.set_viewport_size({"width": width, "height": height})
                _fits(page)
                page.screenshot(path=str(ARTIFACTS / f"pos-error-{width}.png"))

            # A phone: the same screens in one column.
            page.set_viewport_size({"width": 390, "height": 844})
            _fits(page)
            page.screenshot(path=str(ARTIFACTS / "pos-error-390.png"), full_page=True)
            page.fill("#pos-total", "1280")
            code_input.focus()
            page.keyboard.type(second.code)
            page.keyboard.press("Enter")
            expect(page.locator(".pos-to-pay dd")).to_have_text("$1,180")
            _fits(page)
            page.screenshot(path=str(ARTIFACTS / "pos-confirm-390.png"), full_page=True)
            page.goto(receipt_url)
            page.click("details.pos-void > summary")
            _fits(page)
            page.screenshot(path=str(ARTIFACTS / "pos-success-390.png"), full_page=True)
            page.fill("details.pos-void input[name=reason]", "掃錯券")
            page.click("details.pos-void button[type=submit]")
            expect(page.locator(".pos-result.pos-voided")).to_contain_text("已作廢")
            expect(page.locator(".pos-facts")).to_contain_text("掃錯券")
            _fits(page)
            page.screenshot(path=str(ARTIFACTS / "pos-voided-390.png"), full_page=True)

            # English on request.
            page.set_viewport_size({"width": 1024, "height": 768})
            page.goto(f"{live_server}/pos?lang=en")
            expect(page.locator("label.pos-label")).to_have_text("Scan or type the coupon code")
            page.screenshot(path=str(ARTIFACTS / "pos-scan-en-1024.png"))
            context.close()
        finally:
            browser.close()


def _fits(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page is wider than the screen")


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_owner_picks_the_counters_store_on_a_phone(live_server: str, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    for code, name in (("TPE01", "信義店"), ("TPE02", "南京復興店"), ("TXG01", "台中勤美店")):
        make_store(session, tenant, code=code, name=name)
    owner = make_staff(session, tenant, Role.owner, email="owner@bean.tw")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844},
                                          locale="zh-TW", timezone_id="Asia/Taipei",
                                          has_touch=True)
            page = context.new_page()
            page.set_default_timeout(5000)
            expect = sync_api.expect
            sign_in(page, owner.email, f"{live_server}/admin/login?next=/pos")
            expect(page).to_have_url(f"{live_server}/pos/store")
            expect(page.locator(".pos-store-button")).to_have_count(3)
            _fits(page)
            page.screenshot(path=str(ARTIFACTS / "pos-stores-390.png"), full_page=True)
            page.click(".pos-store-button[data-store=TPE02]")
            expect(page).to_have_url(f"{live_server}/pos")
            expect(page.locator(".pos-store")).to_contain_text("南京復興店")
            # The choice stays with the device: the owner may switch from the bar.
            page.click("a.pos-switch")
            expect(page.locator(".pos-store-button.current")).to_have_attribute(
                "data-store", "TPE02")
            context.close()
        finally:
            browser.close()
