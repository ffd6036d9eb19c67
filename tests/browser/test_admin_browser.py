"""End to end: the real app under uvicorn, driven by Debian's Chromium through Playwright.

Screenshots go to `test-artifacts/` at the repository root, for people to look at.
"""

from __future__ import annotations

import pytest

from omniloop.core.db import Session
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.tenancy.factories import make_staff, make_store, make_tenant

pytestmark = pytest.mark.browser

@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_create_store_switch_language_and_phone_menu(live_server: str, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    make_store(session, tenant, code="TPE01", name="信義店", phone="02-2720-1234",
               opening_hours={day: [{"open": "07:30", "close": "21:00"}]
                              for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    owner = make_staff(session, tenant, Role.owner, email="owner@bean.tw")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800},
                                          locale="zh-TW", timezone_id="Asia/Taipei")
            page = context.new_page()
            page.set_default_timeout(5000)
            expect = sync_api.expect

            # Signing in from a deep link lands on the page that was asked for.
            page.goto(f"{live_server}/admin/stores")
            expect(page).to_have_url(f"{live_server}/admin/login?next=/admin/stores")
            sign_in(page, owner.email)
            expect(page.locator("h1")).to_have_text("門市")

            # Create a store through the form, including a day with a lunch break.
            page.click("a.button.primary")
            expect(page.locator("h1")).to_have_text("新增門市")
            page.fill("input[name=code]", "tpe02")
            page.fill("input[name=name]", "南京復興店")
            page.fill("input[name=phone]", "02-2712-5678")
            page.fill("input[name=address]", "台北市松山區南京東路三段 200 號")
            page.fill("input[name=latitude]", "25.0522")
            page.fill("input[name=longitude]", "121.5440")
            for day in ("mon", "tue", "wed", "thu", "fri"):
                page.fill(f"input[name=hours_{day}]", "07:30-21:00")
            page.fill("input[name=hours_sat]", "08:00-12:00, 13:00-20:00")
            page.click("button[type=submit].primary")
            expect(page.locator(".notice.ok")).to_have_text("已建立門市。")
            row = page.locator("tr[data-store=TPE02]")
            expect(row).to_contain_text("南京復興店")
            expect(row.locator("a", has_text="開啟地圖")).to_have_attribute(
                "href", "https://www.google.com/maps/search/?api=1&query=25.0522%2C121.544")
            page.screenshot(path=str(ARTIFACTS / "admin-stores-zh.png"), full_page=True)

            # The language link switches the whole page to English.
            page.click("a[data-lang=en]")
            expect(page.locator("h1")).to_have_text("Stores")
            expect(page.locator("html")).to_have_attribute("lang", "en")
            expect(page.locator("tr[data-store=TPE02]")).to_contain_text("南京復興店")
            expect(page.locator("tr[data-store=TPE02]")).to_contain_text("Active")
            expect(page.locator("a.button.primary")).to_have_text("New store")
            expect(page.locator("nav.nav")).to_contain_text("Audit log")
            page.screenshot(path=str(ARTIFACTS / "admin-stores-en.png"), full_page=True)

            # A phone: the nav folds behind the menu button and the page does not overflow.
            page.set_viewport_size({"width": 390, "height": 844})
            nav = page.locator("nav.nav")
            expect(nav).to_be_hidden()
            assert page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"), (
                "the page is wider than a phone screen")
            page.click("label.menu-button")
            expect(nav).to_be_visible()
            expect(nav.locator("a[aria-current=page]")).to_have_text("Stores")
            page.screenshot(path=str(ARTIFACTS / "admin-stores-phone.png"))
            context.close()
        finally:
            browser.close()
