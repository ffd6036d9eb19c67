"""End to end: a customer opens an unsubscribe link on a phone and opts out with one tap."""

from __future__ import annotations

import pytest

from omniloop.core.db import Database, Session
from omniloop.customers import consent
from omniloop.customers.identify import identify
from omniloop.customers.models import Channel, ConsentStatus, IdentityKind
from omniloop.customers.schemas import IdentityIn
from omniloop.tenancy.access import system_actor
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS
from tests.tenancy.factories import fresh, make_tenant

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_unsubscribe_on_a_phone(live_server: str, session: Session,
                                database: Database) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    actor = system_actor(tenant.id)
    with database.unit_of_work() as uow:
        customer = identify(uow, actor, [IdentityIn(kind=IdentityKind.email,
                                                    value="amy@example.com")]).customer.id
        consent.set_consent(uow, actor, customer, Channel.email, ConsentStatus.opted_in,
                            "web_form")
    path = "/u/" + consent.unsubscribe_token(tenant.id, customer, Channel.email)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844},
                                          device_scale_factor=2, is_mobile=True,
                                          has_touch=True, locale="zh-TW",
                                          timezone_id="Asia/Taipei")
            page = context.new_page()
            page.set_default_timeout(5000)
            expect = sync_api.expect

            page.goto(live_server + path)
            expect(page.locator("html")).to_have_attribute("lang", "zh-Hant-TW")
            expect(page.locator("h1")).to_have_text("取消訂閱")
            expect(page.locator("main .muted")).to_have_text("豆留森林咖啡")
            expect(page.locator("main")).to_contain_text("確定不再收到行銷電子郵件嗎？")
            button = page.locator("button[type=submit]")
            expect(button).to_have_text("取消訂閱")
            box = button.bounding_box()
            assert box is not None
            assert box["height"] >= 40  # a comfortable tap target
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-zh.png"), full_page=True)

            button.tap()
            expect(page.locator("h1")).to_have_text("已取消訂閱")
            expect(page.locator(".notice.ok")).to_have_text(
                "您將不會再收到行銷電子郵件。")
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-done-zh.png"), full_page=True)

            page.click("a[data-lang=en]")
            expect(page.locator("h1")).to_have_text("You have already unsubscribed")
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-en.png"), full_page=True)

            # The signature's first character: its last one carries unused base64 bits.
            head, signature = path.rsplit(".", 1)
            altered = f"{head}.{'B' if signature[0] != 'B' else 'C'}{signature[1:]}"
            page.goto(live_server + altered)
            expect(page.locator("h1")).to_have_text("Link not valid")
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-invalid-en.png"), full_page=True)
        finally:
            browser.close()
    fresh(session)
    assert consent.may_message(session, tenant.id, customer, Channel.email) is False
