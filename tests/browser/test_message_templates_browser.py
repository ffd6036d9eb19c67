"""Message templates in a real Chromium: a marketer writes one on a phone (zh-TW) with the
live preview, sees an unknown variable refused beside the text, then on a desktop (English)
starts a send from it and deletes it. Screenshots in test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from omniloop.core.db import Session
from omniloop.messaging.models import MessageSend, MessageTemplate
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.messaging.conftest import make_member
from tests.tenancy.factories import make_staff, make_tenant

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}
TEXT = "{name} 您好，本週拿鐵第二杯半價！到店出示 LINE 訊息即可享優惠，數量有限，售完為止。"


def _shot(page: Any, name: str) -> None:
    # Against the screen's own width: a phone widens its layout to fit what overflows.
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, (
        "the page is wider than the screen")
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_marketer_writes_a_template_on_a_phone_and_sends_it_on_a_desktop(
        live_server: str, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    tenant = make_tenant(session, slug="beantemplates", name="豆留森林咖啡")
    marketer = make_staff(session, tenant, Role.marketer, email="templates@bean.tw")
    make_member(session, tenant)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            phone = browser.new_context(**PHONE, locale="zh-TW", timezone_id="Asia/Taipei")
            page = phone.new_page()
            page.set_default_timeout(5000)
            sign_in(page, marketer.email, f"{live_server}/admin/messaging/templates")
            expect(page.locator("h1")).to_have_text("訊息範本")
            _shot(page, "templates-empty-phone-zh.png")
            page.click("a[data-action=new-template]")
            expect(page.locator("h1")).to_have_text("新增範本")
            # The channel's own fields only; the preview button is for browsers without JS.
            expect(page.locator("input[name=subject]")).to_be_hidden()
            expect(page.locator("button[value=preview]")).to_be_hidden()
            page.fill("input[name=name]", "拿鐵第二杯半價")
            page.fill("textarea[name=text]", "{nickname} 您好")
            expect(page.locator("#preview .field-error")).to_contain_text("{nickname}")
            page.fill("textarea[name=text]", TEXT)
            # Live: rendered for the signed-in staff member as they type.
            expect(page.locator("#preview .bubble")).to_contain_text(
                "Staff marketer 您好，本週拿鐵第二杯半價！")
            _shot(page, "template-editor-phone-zh.png")
            page.fill("textarea[name=text]", "{nickname} 您好")
            page.click("button[value=save]")
            expect(page.locator("#error-text")).to_contain_text("{nickname}")
            expect(page.locator("input[name=name]")).to_have_value("拿鐵第二杯半價")
            _shot(page, "template-editor-error-phone-zh.png")
            page.fill("textarea[name=text]", TEXT)
            page.click("button[value=save]")
            expect(page.locator(".notice.ok")).to_have_text("已儲存範本。")
            expect(page.locator("table.message-templates tbody tr")).to_have_count(1)
            _shot(page, "templates-list-phone-zh.png")

            session.rollback()
            template = session.scalars(select(MessageTemplate).where(
                MessageTemplate.tenant_id == tenant.id)).one()
            assert template.text == TEXT

            desktop = browser.new_context(**DESKTOP, locale="en-US",
                                          storage_state=phone.storage_state())
            wide = desktop.new_page()
            wide.set_default_timeout(5000)
            wide.goto(f"{live_server}/admin/messaging/templates?lang=en")
            expect(wide.locator("h1")).to_have_text("Message templates")
            _shot(wide, "templates-list-desktop-en.png")
            wide.click(f'tr[data-template="{template.id}"] td.name a')
            expect(wide.locator("#preview .bubble")).to_contain_text("Staff marketer")
            wide.select_option("select[name=channel]", "email")
            expect(wide.locator("input[name=subject]")).to_be_visible()
            expect(wide.locator("input[name=title]")).to_be_hidden()
            wide.fill("input[name=subject]", "{name}，本週拿鐵優惠")
            expect(wide.locator("#preview .subject")).to_contain_text(
                "Staff marketer，本週拿鐵優惠")
            _shot(wide, "template-editor-desktop-en.png")
            wide.select_option("select[name=channel]", "line")

            wide.goto(f"{live_server}/admin/messaging/sends/new")
            wide.select_option("select[name=channel]", "sms")
            wide.select_option("#send-template", template.id)
            expect(wide.locator("select[name=channel]")).to_have_value("line")
            expect(wide.locator("textarea[name=text]")).to_have_value(TEXT)
            wide.fill("input[name=name]", "Latte week")
            wide.click("button[value=preview]")
            expect(wide.locator("#preview .bubble")).to_contain_text("Staff marketer 您好")
            _shot(wide, "send-from-template-desktop-en.png")
            wide.click("button[value=send]")
            expect(wide.locator("h1")).to_contain_text("Latte week")

            wide.goto(f"{live_server}/admin/messaging/templates/{template.id}/delete")
            _shot(wide, "template-delete-desktop-en.png")
            wide.click("button[data-action=confirm-delete]")
            expect(wide.locator(".notice.ok")).to_have_text("The template was deleted.")
            session.rollback()
            assert session.scalars(select(MessageTemplate)).all() == []
            send = session.scalars(select(MessageSend).where(
                MessageSend.tenant_id == tenant.id)).one()
            assert send.content == {"text": TEXT}
        finally:
            browser.close()
