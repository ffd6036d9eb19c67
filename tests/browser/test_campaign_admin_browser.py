"""End to end: a marketer creates a campaign through the admin form in Chromium, launches it,
and the list, form and campaign pages are photographed at desktop and phone widths.

Screenshots go to `test-artifacts/` at the repository root, for people to look at.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from omniloop.campaigns.claims import claim_coupon
from omniloop.campaigns.models import Campaign
from omniloop.campaigns.redemption import redeem, void_redemption
from omniloop.campaigns.schemas import ClaimIn, RedeemIn
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.customers.schemas import IdentityIn
from omniloop.orders.schemas import OrderLineIn
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, Tenant
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.campaigns.factories import make_campaign
from tests.tenancy.factories import make_staff, make_store, make_tenant

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": 1280, "phone": 390}


def shoot(page: Any, name: str) -> None:
    """The page at both widths, full length; on a phone nothing may be wider than the
    screen."""
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 844 if width < 500 else 900})
        if width < 500:
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} is {overflow}px wider than a phone screen"
        page.screenshot(path=str(ARTIFACTS / f"admin-campaign-{name}-{label}.png"),
                        full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def two_weeks_of_use(session: Session, tenant: Tenant, campaign: Campaign) -> None:
    """Claims through LINE, the web and SMS over two weeks, redeemed at two stores on most
    days, one redemption voided: enough rows for the report's tables and chart."""
    actor = system_actor(tenant.id)
    start = utcnow() - timedelta(days=14)
    for n in range(40):
        at = start + timedelta(hours=7 * n)
        channel = ("line", "line", "web", "sms")[n % 4]
        coupon = claim_coupon(session, actor, campaign.id, ClaimIn(
            identities=[IdentityIn(kind="phone", value=f"0912-{n:03d}-000")],
            channel=channel), now=at).coupon
        session.commit()
        if n % 3 == 2:
            continue  # claimed, not (yet) used
        store = "TPE01" if n % 2 else "TPE02"
        used = redeem(session, actor, RedeemIn(
            code=coupon.code or "", store_code=store, basket_total_minor=52000 + 1000 * n,
            staff="王小明", order_lines=[OrderLineIn(
                sku="CF-LATTE", quantity=1, unit_price_minor=52000 + 1000 * n)]),
            f"seed-{n}", now=at + timedelta(hours=5)).redemption
        session.commit()
        if n == 37:
            void_redemption(session, actor, used.id, "收銀員按錯",
                            now=at + timedelta(hours=5, minutes=3))
            session.commit()


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_marketer_creates_and_launches_a_campaign(live_server: str, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    make_store(session, tenant, code="TPE01", name="信義店")
    make_store(session, tenant, code="TPE02", name="南京復興店")
    marketer = make_staff(session, tenant, Role.marketer, email="mkt@bean.tw")
    # An earlier campaign with two weeks of claims and redemptions, for the report.
    earlier = make_campaign(session, tenant, name="週年慶滿額折 NT$100", min_spend_minor=50000,
                            starts_at=(utcnow() - timedelta(days=20)).isoformat())
    two_weeks_of_use(session, tenant, earlier)
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          locale="zh-TW", timezone_id="Asia/Taipei")
            page = context.new_page()
            page.set_default_timeout(5000)
            expect = sync_api.expect

            sign_in(page, marketer.email, f"{live_server}/admin/campaigns")
            expect(page.locator("h1")).to_have_text("活動")
            expect(page.locator("nav.nav a[aria-current=page]")).to_have_text("活動")

            # The form: choosing the kind shows only its fields.
            page.click("a.button.primary")
            expect(page.locator("h1")).to_have_text("新增活動")
            page.fill("input[name=name]", "秋季拿鐵 85 折")
            page.fill("textarea[name=description]", "拿鐵系列飲品享 85 折，每人限用一次。")
            page.select_option("select[name=kind]", "percent_off")
            expect(page.locator("input[name=value]")).to_be_hidden()
            expect(page.locator("input[name=percent_off]")).to_be_visible()
            page.fill("input[name=percent_off]", "15")
            page.fill("input[name=max_discount]", "60")
            page.fill("input[name=ends_at]", "2099-12-31T21:00")
            page.check("input[name=validity][value=days]")
            expect(page.locator("input[name=coupon_valid_days]")).to_be_visible()
            expect(page.locator("input[name=coupon_valid_until]")).to_be_hidden()
            page.fill("input[name=coupon_valid_days]", "14")
            page.check("label:has-text('信義店') input[name=store_ids]")
            page.fill("input[name=skus]", "CF-LATTE, CF-OATLATTE")
            page.fill("input[name=min_spend]", "120")
            page.fill("input[name=budget]", "30000")
            page.fill("input[name=holdout_percent]", "10")
            page.check("input[name=claim_channels][value=line]")
            page.check("input[name=claim_channels][value=web]")
            expect(page.locator("input[name=shared_code]")).to_be_hidden()
            # First a mistake: the error shows at its field and the rest is kept.
            page.fill("input[name=percent_off]", "150")
            page.click("button[type=submit].primary")
            expect(page.locator("#error-percent_off")).to_contain_text("1 到 100")
            expect(page.locator("input[name=name]")).to_have_value("秋季拿鐵 85 折")
            expect(page.locator("input[name=claim_channels][value=line]")).to_be_checked()
            shoot(page, "form-error")
            page.fill("input[name=percent_off]", "15")
            page.click("button[type=submit].primary")

            # The campaign's page: a draft until launched.
            expect(page.locator(".notice.ok")).to_contain_text("已建立活動草稿")
            expect(page.locator("h1 .badge")).to_have_text("草稿")
            page.click("button[data-action=launch]")
            expect(page.locator(".notice.ok")).to_have_text("活動已上架。")
            expect(page.locator("h1 .badge")).to_have_text("進行中")
            expect(page.locator("button[data-action=pause]")).to_be_visible()
            expect(page.locator(".claim-url a")).to_contain_text("/c/beanhouse/claim/")
            expect(page.locator(".qr-box svg")).to_be_visible()
            shoot(page, "page")

            page.click("a:has-text('編輯')")
            expect(page.locator("input[name=percent_off]")).to_have_value("15")
            expect(page.locator("input[name=budget]")).to_have_value("30000")
            shoot(page, "form")

            page.goto(f"{live_server}/admin/campaigns")
            expect(page.locator("table.campaigns tbody tr")).to_have_count(2)
            expect(page.locator("table.campaigns")).to_contain_text("秋季拿鐵 85 折")
            shoot(page, "list")

            # The earlier campaign's report.
            page.click(f"a[href='/admin/campaigns/{earlier.id}']")
            expect(page.locator("[data-figure=claimed] .figure")).to_have_text("40")
            expect(page.locator("[data-figure=redeemed] .figure")).to_have_text("26")
            expect(page.locator("table.by-store tbody tr")).to_have_count(2)
            expect(page.locator(".day-chart rect").first).to_be_visible()
            expect(page.locator("table.recent tr.voided")).to_have_count(1)
            shoot(page, "report")
            page.goto(f"{live_server}/admin/campaigns?lang=en")
            expect(page.locator("h1")).to_have_text("Campaigns")
            expect(page.locator("table.campaigns")).to_contain_text("Running")
            shoot(page, "list-en")
            page.click(f"a[href='/admin/campaigns/{earlier.id}']")
            expect(page.locator("[data-figure=conversion]")).to_contain_text("O2O conversion")
            shoot(page, "report-en")
            context.close()
        finally:
            browser.close()
