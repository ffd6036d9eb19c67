"""End to end in Chromium: the analytics pages draw their charts with the Plotly served by
omniloop itself (the browser has no internet), on a desktop and a phone, in both languages.

Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from omniloop.core.db import Session
from omniloop.tenancy.models import Role
from tests.analytics.factories import END, make_history
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, live_server  # noqa: F401
from tests.tenancy.factories import PASSWORD, make_staff, make_tenant

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's Chromium at /usr/bin/chromium"),
]


def test_charts_draw_from_the_local_plotly(live_server: str,  # noqa: F811
                                           session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    history = make_history(session, tenant, customers=30)
    owner = make_staff(session, history.tenant, Role.owner, email="owner@bean.tw")
    ARTIFACTS.mkdir(exist_ok=True)
    start = END - timedelta(days=150)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            for name, viewport in (("desktop", {"width": 1280, "height": 900}),
                                   ("phone", {"width": 390, "height": 844})):
                context = browser.new_context(viewport=viewport, locale="zh-TW",
                                              timezone_id="Asia/Taipei")
                page = context.new_page()
                page.set_default_timeout(30000)
                outside: list[str] = []

                def note(request: object, seen: list[str] = outside) -> None:
                    url = str(getattr(request, "url", ""))
                    if not url.startswith(live_server):
                        seen.append(url)

                page.on("request", note)
                expect = sync_api.expect
                page.goto(f"{live_server}/admin/analytics?start={start}&end={END}")
                page.fill("input[name=email]", owner.email)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                expect(page.locator("h1")).to_have_text("門市儀表板")
                for chart in ("sales", "channels", "heatmap", "products"):
                    expect(page.locator(f"#chart-{chart} .main-svg").first).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / f"analytics-dashboard-{name}-zh.png"),
                                full_page=True)
                page.goto(f"{live_server}/admin/analytics/rfm?lang=en")
                expect(page.locator("h1")).to_have_text("RFM segments")
                expect(page.locator("#chart-segments .main-svg").first).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / f"analytics-rfm-{name}-en.png"),
                                full_page=True)
                page.goto(f"{live_server}/admin/analytics/clv?as_of={END}")
                expect(page.locator("#chart-alive .main-svg").first).to_be_visible()
                # Nothing wider than the screen on a phone.
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, f"{name}: the page is {overflow}px wider than the screen"
                assert outside == []
                context.close()
        finally:
            browser.close()
