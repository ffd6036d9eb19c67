"""The messaging admin in a real Chromium: a marketer previews and sends a LINE message to
members, the worker's round delivers it to the LINE stand-in, a failed message is sent again
from the dead letters; zh-TW on a desktop, English on a phone. Screenshots in test-artifacts/.
"""

from __future__ import annotations

import pytest

from omniloop.core.db import Database, Session
from omniloop.core.ratelimit import MemoryRateLimiter
from omniloop.messaging import channels
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import OutboxChannel, Purpose
from omniloop.messaging.service import message_customer
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.messaging.conftest import (
    LINE_SECRET,
    LINE_TOKEN,
    daytime_clock,
    dispatch_config,
    make_member,
)
from tests.messaging.standins import LineStandIn
from tests.tenancy.factories import make_staff, make_tenant

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_marketer_sends_on_line_and_replays_a_dead_letter(
        live_server: str, database: Database, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanmsg", name="豆留森林咖啡")
    actor = system_actor(tenant.id)
    channels.save_channel(session, actor, OutboxChannel.line, {},
                          {"channel_access_token": LINE_TOKEN, "channel_secret": LINE_SECRET})
    session.commit()
    members = [make_member(session, tenant) for _ in range(5)]
    marketer = make_staff(session, tenant, Role.marketer, email="mkt@bean.tw")
    ARTIFACTS.mkdir(exist_ok=True)

    with LineStandIn(token=LINE_TOKEN) as line:
        # Marketing sends wait out quiet hours: the worker's clock at 14:00 Taipei.
        dispatcher = Dispatcher(database, dispatch_config(line.url, max_attempts=1),
                                clock=daytime_clock(), limiter=MemoryRateLimiter())
        # A message LINE refuses to take (500 on its only try): a dead letter.
        with database.unit_of_work() as work:
            message_customer(work, actor, members[0].id, OutboxChannel.line,
                             Purpose.transactional, "shipped", {"text": "您的訂單已出貨"})
        line.always = 500
        assert dispatcher.drain().dead == 1
        line.always = None

        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 860},
                                              locale="zh-TW", timezone_id="Asia/Taipei")
                page = context.new_page()
                page.set_default_timeout(5000)
                expect = sync_api.expect
                sign_in(page, marketer.email, f"{live_server}/admin/messaging")
                expect(page.locator("h1")).to_have_text("訊息")
                expect(page.locator('tr[data-channel=line] td[data-status=dead]')).to_have_text("1")

                page.click("a.button.primary")  # 新增發送
                page.fill("input[name=name]", "週末快閃")
                page.fill("textarea[name=text]", "{name} 您好，週末全品項 85 折！")
                page.click("button[value=preview]")
                expect(page.locator(".preview")).to_contain_text("週末全品項 85 折")
                expect(page.locator(".preview")).to_contain_text("5")
                page.screenshot(path=str(ARTIFACTS / "messaging-send-preview-zh.png"),
                                full_page=True)
                page.click("button[value=send]")
                expect(page.locator("h1")).to_have_text("週末快閃")
                expect(page.locator(".notice.ok")).to_have_text("已建立發送。")

                assert dispatcher.drain().sent == 5  # the worker's round
                assert line.delivered_to() == {m.line_user for m in members}
                page.reload()
                expect(page.locator('[data-progress] [data-status=sent]')).to_contain_text("5")
                page.screenshot(path=str(ARTIFACTS / "messaging-send-detail-zh.png"),
                                full_page=True)

                page.goto(f"{live_server}/admin/messaging/messages?state=dead")
                expect(page.locator("tr[data-status=dead]")).to_have_count(1)
                page.screenshot(path=str(ARTIFACTS / "messaging-dead-letters-zh.png"),
                                full_page=True)
                page.click("button[data-action=replay]")
                expect(page.locator(".notice.ok")).to_have_text("這些訊息將重新發送。")
                assert dispatcher.drain().sent == 1
                assert line.deliveries[members[0].line_user] == 2

                phone = browser.new_context(viewport={"width": 390, "height": 844},
                                            device_scale_factor=2, is_mobile=True,
                                            has_touch=True, locale="en-US",
                                            storage_state=context.storage_state())
                small = phone.new_page()
                small.set_default_timeout(5000)
                small.goto(f"{live_server}/admin/messaging?lang=en")
                expect(small.locator("h1")).to_have_text("Messaging")
                small.screenshot(path=str(ARTIFACTS / "messaging-overview-phone-en.png"),
                                 full_page=True)
                small.goto(f"{live_server}/admin/messaging/settings")
                expect(small.locator("#rules h2")).to_have_text("Sending rules")
                small.screenshot(path=str(ARTIFACTS / "messaging-settings-phone-en.png"),
                                 full_page=True)
            finally:
                browser.close()
                dispatcher.close()
