"""The offline → online loop end to end, in Chromium, as four people.

A guest at table 5 scans its QR code on a phone, joins with a phone number, leaves feedback
and gets a referral link; a friend opens the link on another phone and claims the welcome
coupon; the cashier redeems it at /pos; the referral qualifies, both rewards are issued once,
and the owner's loop report counts each step. Screenshots of every page land in
test-artifacts/ (phone and desktop).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from omniloop.core.db import Session
from omniloop.loops.models import Purpose, Referral, ReferralStatus
from omniloop.loops.recorder import recorder
from omniloop.loyalty.ledger import balance_of
from omniloop.loyalty.models import PointsEntry
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.loops.factories import make_shop, make_touchpoint
from tests.tenancy.factories import fresh, make_staff

pytestmark = pytest.mark.browser
PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "zh-TW",
         "timezone_id": "Asia/Taipei", "has_touch": True, "is_mobile": True}


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_table_scan_feedback_referral_redemption_report(live_server: str,
                                                        session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    shop = make_shop(session, slug="beanhouse")
    table = make_touchpoint(session, shop, Purpose.membership, number=5, reward_points=20)
    make_touchpoint(session, shop, Purpose.review, number=None,
                    target_url="https://maps.example/?review=beanhouse-tpe01")
    cashier = make_staff(session, shop.tenant, Role.cashier, stores_=[shop.store],
                         email="pos@bean.tw")
    owner = make_staff(session, shop.tenant, Role.owner, email="owner@bean.tw")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            # 1. The guest at table 5.
            guest = browser.new_context(**PHONE).new_page()
            guest.set_default_timeout(5000)
            guest.goto(f"{live_server}/t/{table.code}")
            expect(guest.locator("h1")).to_have_text("加入我們的會員")
            expect(guest.locator("[data-disclosure]")).to_be_visible()
            guest.screenshot(path=str(ARTIFACTS / "loops-landing-phone.png"), full_page=True)
            guest.fill("input[name=phone]", "0912 345 678")
            guest.locator("button[type=submit]").tap()
            guest.wait_for_url("**/done?**")
            expect(guest.locator("[data-points-given]")).to_contain_text("20")
            guest.locator("[data-leave-feedback]").tap()
            expect(guest.locator("h1")).to_have_text("這次的體驗如何？")
            guest.locator(".c-rating label").nth(4).tap()
            guest.locator(".c-nps label").nth(9).tap()
            guest.fill("textarea[name=comment]", "拿鐵很香，座位舒服")
            guest.screenshot(path=str(ARTIFACTS / "loops-feedback-phone.png"), full_page=True)
            guest.locator("button[type=submit]").tap()
            guest.wait_for_url("**fb=**")
            expect(guest.locator("[data-feedback-received]")).to_be_visible()
            # Invited to review publicly, as every respondent is (no gating).
            expect(guest.locator("[data-review-invite]")).to_be_visible()
            link = guest.locator("[data-referral-link]").input_value()
            assert "/c/beanhouse/ref/" in link
            guest.screenshot(path=str(ARTIFACTS / "loops-done-phone.png"), full_page=True)

            # 2. The friend, on another phone, from the link.
            friend = browser.new_context(**PHONE).new_page()
            friend.set_default_timeout(5000)
            friend.goto(f"{live_server}{re.sub(r'^https?://[^/]+', '', link)}")
            expect(friend.locator("h1")).to_have_text("好友見面禮 NT$50")
            friend.screenshot(path=str(ARTIFACTS / "loops-invite-phone.png"), full_page=True)
            friend.fill("input[name=phone]", "0911 222 333")
            friend.locator("button[type=submit]").tap()
            friend.wait_for_url("**/wallet/**")
            code = friend.locator(".c-coupon [data-code]").first.inner_text().strip()
            assert code

            # 3. The cashier redeems the welcome coupon.
            pos = browser.new_context(viewport={"width": 1024, "height": 768},
                                      locale="zh-TW", timezone_id="Asia/Taipei").new_page()
            pos.set_default_timeout(5000)
            sign_in(pos, cashier.email, f"{live_server}/pos")
            pos.fill("#pos-total", "180")
            pos.locator("#pos-code").focus()
            pos.keyboard.type(code)
            pos.keyboard.press("Enter")
            expect(pos.locator(".pos-to-pay dd")).to_have_text("$130")
            pos.click("button.pos-go")
            expect(pos.locator(".pos-result.pos-success")).to_contain_text("已核銷")

            # 4. Qualified once; both rewarded once.
            fresh(session)
            referral = session.scalar(select(Referral))
            assert referral is not None
            assert referral.status == ReferralStatus.qualified
            rewards = session.scalar(select(func.count()).select_from(PointsEntry).where(
                PointsEntry.reference == referral.id))
            assert rewards == 2
            assert balance_of(session, shop.tenant.id, referral.referrer_id) == 120  # 20 + 100
            assert balance_of(session, shop.tenant.id, referral.friend_id) == 50

            # 5. The owner's loop report counts each step.
            recorder.flush()
            office = browser.new_context(viewport={"width": 1280, "height": 900},
                                         locale="zh-TW", timezone_id="Asia/Taipei").new_page()
            office.set_default_timeout(5000)
            sign_in(office, owner.email, f"{live_server}/admin/loops/report")
            office.goto(f"{live_server}/admin/loops/report")
            overall = office.locator("table.overall")
            for figure, value in (("scans", "1"), ("identified", "1"), ("acted", "1"),
                                  ("referred", "1"), ("first_purchases", "1")):
                expect(overall.locator(f"[data-figure={figure}] .figure")).to_have_text(value)
            expect(overall.locator("[data-action=feedback_submitted]")).to_contain_text("1")
            office.screenshot(path=str(ARTIFACTS / "loops-report-desktop.png"), full_page=True)
            office.goto(f"{live_server}/admin/loops/touchpoints")
            expect(office.locator(f'tr[data-code="{table.code}"]')).to_be_visible()
            office.screenshot(path=str(ARTIFACTS / "loops-touchpoints-desktop.png"),
                              full_page=True)
            office.goto(f"{live_server}/admin/loops/feedback")
            office.screenshot(path=str(ARTIFACTS / "loops-feedback-desktop.png"), full_page=True)
        finally:
            browser.close()
