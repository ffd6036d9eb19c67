"""E-mail tracking in a real Chromium: a person's mail client shows the HTML of a campaign
e-mail (the open pixel loads), they tap a link (through /m/c/ to where it points), and the
marketer reads the opens and clicks on the send's page, zh-TW on a desktop and English on a
phone. Screenshots in test-artifacts/.
"""

from __future__ import annotations

import pytest

from omniloop.core.db import Database, Session
from omniloop.core.ratelimit import MemoryRateLimiter
from omniloop.core.settings import get_settings
from omniloop.messaging import sends
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.models import OutboxChannel
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.messaging.conftest import daytime_clock, dispatch_config, make_member, setup_email
from tests.messaging.standins import SmtpStandIn
from tests.tenancy.factories import make_staff, make_tenant

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_opens_and_clicks_from_a_real_browser_reach_the_send_page(
        live_server: str, database: Database, session: Session,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setattr(get_settings(), "base_url", live_server)
    tenant = make_tenant(session, slug="beanmail", name="豆留森林咖啡")
    members = [make_member(session, tenant, email=f"fan{i}@example.com") for i in range(4)]
    marketer = make_staff(session, tenant, Role.marketer, email="mkt@beanmail.tw")
    ARTIFACTS.mkdir(exist_ok=True)
    html = (f'<html><body style="font-family:sans-serif"><h1>秋季新品上市</h1>'
            f'<p><a id="shop" href="{live_server}/healthz">看新品</a></p></body></html>')

    with SmtpStandIn() as smtp, sync_api.sync_playwright() as p:
        setup_email(database, tenant, smtp)
        with database.unit_of_work() as work:
            send = sends.create_send(work, system_actor(tenant.id), name="秋季新品電子報",
                                     channel=OutboxChannel.email, audience={"kind": "channel"},
                                     content={"subject": "秋季新品", "text": "看新品",
                                              "html": html})
            send_id = send.id
        # Marketing mail waits out quiet hours: the worker's clock at 14:00 Taipei.
        dispatcher = Dispatcher(database, dispatch_config("http://127.0.0.1:9"),
                                clock=daytime_clock(), limiter=MemoryRateLimiter())
        try:
            assert dispatcher.drain().sent == len(members)
        finally:
            dispatcher.close()
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            expect = sync_api.expect
            # Two people open the mail; one of them taps the link.
            for index, mail in enumerate(smtp.mails[:2]):
                reader = browser.new_page()
                reader.set_default_timeout(5000)
                body = mail.get_body(("html",))
                assert body is not None
                with reader.expect_response(lambda r: "/m/o/" in r.url) as pixel:
                    reader.set_content(str(body.get_content()))
                assert pixel.value.status == 200
                if index == 0:
                    reader.click("#shop")
                    reader.wait_for_url(f"{live_server}/healthz")
                    assert '"status"' in reader.content()
                reader.close()

            context = browser.new_context(viewport={"width": 1280, "height": 860},
                                          locale="zh-TW", timezone_id="Asia/Taipei")
            page = context.new_page()
            page.set_default_timeout(5000)
            sign_in(page, marketer.email, f"{live_server}/admin/messaging/sends/{send_id}")
            page.goto(f"{live_server}/admin/messaging/sends/{send_id}")
            expect(page.locator("[data-opened]").first).to_contain_text("2")
            expect(page.locator("dd[data-clicked]")).to_contain_text("1")
            expect(page.locator("dd[data-clicked]")).to_contain_text("25 %")
            expect(page.locator("tr span[data-clicked]")).to_have_count(1)
            page.screenshot(path=str(ARTIFACTS / "messaging-email-tracking-zh.png"),
                            full_page=True)

            phone = browser.new_context(viewport={"width": 390, "height": 844},
                                        device_scale_factor=2, is_mobile=True,
                                        has_touch=True, locale="en-US",
                                        storage_state=context.storage_state())
            small = phone.new_page()
            small.goto(f"{live_server}/admin/messaging/sends/{send_id}?lang=en")
            expect(small.locator("dd[data-opened]")).to_contain_text("50 %")
            small.screenshot(path=str(ARTIFACTS / "messaging-email-tracking-phone-en.png"),
                             full_page=True)
        finally:
            browser.close()
