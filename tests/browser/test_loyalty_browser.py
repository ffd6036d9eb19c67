"""End to end on a phone: the member card in the wallet, read off the screen by zxing-cpp the
way a counter scanner reads it, renewed by the page before it runs out, scanned at /pos by
the cashier, who pays with points and records the purchase; the wallet then shows the new
balance. Plus screenshots of every loyalty page in zh-TW and English, phone and desktop
(`test-artifacts/loyalty-*.png`), each checked for sideways overflow.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import zxingcpp

from omniloop.campaigns import claims
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.tokens import TokenKind, verify_token
from omniloop.customers.models import Customer
from omniloop.loyalty.ledger import Source, credit
from omniloop.loyalty.member_card import member_token
from omniloop.loyalty.models import EntryKind, NoShowKind
from omniloop.loyalty.risk import mark_no_show
from omniloop.loyalty.tiers import evaluate_tiers
from omniloop.orders.schemas import OrderIn
from omniloop.orders.service import ingest_order
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.browser.test_claim_wallet_browser import png_to_grey
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import (
    fresh,
    make_api_key,
    make_staff,
    make_store,
    make_tenant,
)

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


def _fits(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page is wider than the screen")


def _shot(page: Any, name: str) -> None:
    _fits(page)
    page.screenshot(path=str(ARTIFACTS / f"loyalty-{name}.png"), full_page=True)


def _read_qr(locator: Any, name: str) -> str:
    png = locator.screenshot(type="png", path=str(ARTIFACTS / f"loyalty-{name}.png"))
    found = zxingcpp.read_barcodes(png_to_grey(png))
    assert len(found) == 1, "no QR code read from the screenshot"
    return str(found[0].text)


def _sign_in(page: Any, base: str, email: str, next_path: str) -> None:
    sign_in(page, email, f"{base}/admin/login?next={next_path}")
    page.wait_for_url(f"{base}{next_path}")


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_member_card_from_the_wallet_to_the_counter(live_server: str, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店")
    cashier = make_staff(session, tenant, Role.cashier, stores_=[store], email="cashier@bean.tw")
    key = make_api_key(session, tenant, scopes=["pos"])
    campaign = make_campaign(session, tenant, name="秋季拿鐵 NT$100 折價券")
    coupon = claim_for(session, tenant, campaign, phone="0912-345-678")
    customer = coupon.customer_id
    assert customer is not None
    fresh(session)
    actor = system_actor(tenant.id)
    person = session.get(Customer, (tenant.id, customer))
    assert person is not None
    person.name = "林小姐"
    # NT$6,000 over the year: 60 points, and Silver (from NT$5,000) at the tier evaluation;
    # 500 more points that expire within the month.
    ingest_order(session, actor, OrderIn.model_validate({
        "external_id": "POS-1", "customer_id": customer, "store_id": store.id,
        "lines": [{"sku": "CF-BEANS", "quantity": 4, "unit_price_minor": 150000}],
        "paid_at": (utcnow() - timedelta(days=40)).isoformat()}))
    credit(session, actor, customer, 500, EntryKind.adjust, "welcome", Source(reason="開幕禮"),
           expires_at=utcnow() + timedelta(days=12))
    evaluate_tiers(session, actor)
    mark_no_show(session, actor, customer, kind=NoShowKind.booking, reference="BK-77",
                 due_at=utcnow() - timedelta(days=5), store_id=store.id)
    session.commit()
    wallet_url = f"{live_server}{claims.wallet_path(session, tenant.id, customer)}"
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            expect = sync_api.expect
            phone = browser.new_context(**PHONE, locale="zh-TW", timezone_id="Asia/Taipei")
            wallet = phone.new_page()
            wallet.set_default_timeout(8000)
            # The countdown and the renewal run on the page's clock, paused here so that
            # time moves only when the test says (a slow machine cannot eat the margin).
            start = datetime.now(UTC)
            wallet.clock.install(time=start)
            wallet.clock.pause_at(start + timedelta(seconds=1))
            wallet.goto(wallet_url)
            card = wallet.locator("[data-member-card]")
            expect(card.locator("[data-balance]")).to_have_text("560")
            expect(card.locator("[data-tier]")).to_have_text("Silver")
            expect(card.locator("[data-expiring]")).to_contain_text("500 點將自")
            expect(card.locator("[data-countdown]")).to_have_text("5:00")
            expect(card.locator("[data-refresh]")).to_be_hidden()  # only once it ran out
            qr = card.locator(".c-qr svg")
            box = qr.bounding_box()
            assert box is not None
            assert box["width"] >= 220
            _shot(wallet, "wallet-zh-390")
            first = _read_qr(qr, "wallet-qr-1")
            assert verify_token(first, tenant_id=tenant.id,
                                kind=TokenKind.MEMBER).subject_id == customer
            scanned = wallet.request.post(f"{live_server}/api/v1/pos/members/scan",
                                          headers={"Authorization": f"Bearer {key}"},
                                          data={"token": first})
            assert scanned.status == 200, scanned.text()
            assert scanned.json()["customer_id"] == customer
            assert scanned.json()["balance"] == 560

            # Thirty seconds before it runs out the page fetches a fresh code by itself. The
            # server signs with the real clock, to the second: let a real second pass so the
            # fresh code cannot be the same token again.
            time.sleep(1.1)
            wallet.clock.run_for("04:00")
            expect(card.locator("[data-countdown]")).to_have_text("1:00")
            assert card.get_attribute("data-renewed") == "0"
            wallet.clock.run_for("00:31")
            expect(card).to_have_attribute("data-renewed", "1")
            expect(card.locator("[data-countdown]")).to_have_text("5:00")
            second = _read_qr(card.locator(".c-qr svg"), "wallet-qr-2")
            assert second != first
            assert verify_token(second, tenant_id=tenant.id,
                                kind=TokenKind.MEMBER).subject_id == customer
            # Offline when it runs out: the code fades and a button offers a fresh one.
            wallet.route("**/member-qr", lambda route: route.abort())
            wallet.clock.run_for("05:01")
            expect(card).to_have_class(re.compile(r"\bis-expired\b"))
            expect(card.locator("[data-countdown]")).to_have_text("0:00")
            expect(card.locator("[data-refresh]")).to_be_visible()
            _shot(wallet, "wallet-expired-zh-390")
            wallet.unroute("**/member-qr")
            card.locator("[data-refresh]").click()
            expect(card).to_have_attribute("data-renewed", "2")
            expect(card.locator("[data-refresh]")).to_be_hidden()

            # The cashier, on a phone too: the member QR goes into the one scan box.
            counter_ctx = browser.new_context(**PHONE, locale="zh-TW",
                                              timezone_id="Asia/Taipei")
            pos = counter_ctx.new_page()
            pos.set_default_timeout(8000)
            _sign_in(pos, live_server, cashier.email, "/pos")
            pos.fill("#pos-total", "400")
            pos.fill("#pos-code", second)
            pos.press("#pos-code", "Enter")
            pos.wait_for_url("**/pos/member?m=*")
            expect(pos.locator(".pos-member-name")).to_contain_text("林小姐")
            expect(pos.locator("[data-balance]")).to_have_text("560")
            expect(pos.locator(".pos-tier")).to_have_text("Silver")
            expect(pos.locator(".pos-phone")).to_contain_text("***")
            expect(pos.locator(".pos-risk[data-flag=watch]")).to_have_text("留意：近期曾未到")
            _shot(pos, "pos-member-zh-390")

            pos.fill("input[name=total]", "400")
            pos.fill("input[name=points]", "300")  # more than half of NT$400
            pos.click("[data-action=redeem]")
            expect(pos.locator("#error-points")).to_contain_text("最多可用 200 點")
            expect(pos.locator("input[name=points]")).to_have_value("300")
            _shot(pos, "pos-member-refused-zh-390")
            pos.fill("input[name=points]", "100")
            pos.click("[data-action=redeem]")
            expect(pos.locator("[data-result=redeemed]")).to_be_visible()
            expect(pos.locator("[data-discount]")).to_have_text("$100")
            expect(pos.locator("[data-to-pay]")).to_have_text("$300")
            expect(pos.locator("[data-balance]")).to_have_text("460")
            expect(pos.locator("input[name=amount]")).to_have_value("400")
            _shot(pos, "pos-member-redeemed-zh-390")
            pos.click("[data-action=purchase]")
            expect(pos.locator("[data-result=purchase]")).to_contain_text("+3 點")  # 300 × 1.25%
            expect(pos.locator("[data-balance]")).to_have_text("463")
            _shot(pos, "pos-member-purchase-zh-390")

            # Back in the wallet: the new balance.
            wallet.reload()
            expect(wallet.locator("[data-member-card] [data-balance]")).to_have_text("463")
            wallet.click("a[data-lang=en]")
            expect(wallet.locator(".c-member-title")).to_have_text("Member card")
            _shot(wallet, "wallet-en-390")

            # The same panel on a desktop, in English.
            wide_ctx = browser.new_context(**DESKTOP, locale="en-US", timezone_id="Asia/Taipei")
            wide = wide_ctx.new_page()
            wide.set_default_timeout(8000)
            wide.goto(wallet_url + "?lang=en")
            _shot(wide, "wallet-en-1280")
            _sign_in(wide, live_server, cashier.email, "/pos")
            wide.click("[data-action=member]")
            wide.fill("#member-token", member_token(tenant.id, customer))
            wide.press("#member-token", "Enter")
            expect(wide.locator("[data-balance]")).to_have_text("463")
            _shot(wide, "pos-member-en-1280")
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_admin_loyalty_pages_on_phone_and_desktop(live_server: str, session: Session) -> None:
    """Settings (with a refusal), liability, the 360 page's points and risk, the search list's
    badges: screenshots in both languages and sizes, nothing wider than the screen."""
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    store = make_store(session, tenant, code="TPE01", name="信義店")
    owner = make_staff(session, tenant, Role.owner, email="owner@bean.tw")
    fresh(session)
    actor = system_actor(tenant.id)
    people = []
    for index, (name, phone, spend) in enumerate((("林小姐", "0912-345-678", 1_800_000),
                                                  ("王先生", "0922-333-444", 600_000),
                                                  ("陳小姐", "0933-111-222", 80_000))):
        placed, _ = ingest_order(session, actor, OrderIn.model_validate({
            "external_id": f"SEED-{index}", "store_id": store.id,
            "identities": [{"kind": "phone", "value": phone}], "traits": {"name": name},
            "lines": [{"sku": "CF-BEANS", "quantity": 1, "unit_price_minor": spend}],
            "paid_at": (utcnow() - timedelta(days=10 + index * 20)).isoformat()}))
        assert placed.customer_id is not None
        people.append(placed.customer_id)
    evaluate_tiers(session, actor)
    for reference in ("BK-1", "BK-2"):
        mark_no_show(session, actor, people[1], kind=NoShowKind.booking, reference=reference,
                     due_at=utcnow() - timedelta(days=3), store_id=store.id)
    mark_no_show(session, actor, people[2], kind=NoShowKind.pickup, reference="PU-7",
                 due_at=utcnow() - timedelta(days=2))
    session.commit()
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            expect = sync_api.expect
            for size, options in (("390", PHONE), ("1280", DESKTOP)):
                ctx = browser.new_context(**options, locale="zh-TW", timezone_id="Asia/Taipei")
                page = ctx.new_page()
                page.set_default_timeout(8000)
                _sign_in(page, live_server, owner.email, "/admin/loyalty")
                for lang in ("zh", "en"):
                    suffix = f"{lang}-{size}"
                    query = "?lang=en" if lang == "en" else "?lang=zh_TW"
                    page.goto(f"{live_server}/admin/loyalty{query}")
                    expect(page.locator("input[name=earn_amount]")).to_have_value("100")
                    _shot(page, f"settings-{suffix}")
                    page.goto(f"{live_server}/admin/loyalty/liability{query}")
                    expect(page.locator("[data-figure=points] .figure")).to_have_text("248")
                    _shot(page, f"liability-{suffix}")
                    page.goto(f"{live_server}/admin/customers{query}")
                    expect(page.locator("[data-flag=high]")).to_have_count(1)
                    expect(page.locator("[data-flag=watch]")).to_have_count(1)
                    _shot(page, f"customers-{suffix}")
                    page.goto(f"{live_server}/admin/customers/{people[1]}{query}")
                    expect(page.locator(".risk-flags [data-flag=high]")).to_be_visible()
                    page.locator("#points-adjust summary").click()
                    page.locator("#no-show-form summary").click()
                    page.locator("#blacklist-form summary").click()
                    _shot(page, f"customer-{suffix}")

                # A refusal on the phone keeps what was typed beside its message.
                page.goto(f"{live_server}/admin/loyalty?lang=zh_TW")
                page.fill("input[name=earn_amount]", "一百")
                page.locator("button.primary[type=submit]").click()
                expect(page.locator("#error-earn_amount")).to_have_text(
                    "請輸入大於 0 的金額，例如 100。")
                expect(page.locator("input[name=earn_amount]")).to_have_value("一百")
                _shot(page, f"settings-refused-zh-{size}")
                # The daily job button.
                page.goto(f"{live_server}/admin/loyalty?lang=zh_TW")
                page.click("[data-action=daily]")
                expect(page.locator(".notice.ok")).to_contain_text("每日作業完成")
                # Blacklisting from the 360 page flags the customer at the top.
                page.goto(f"{live_server}/admin/customers/{people[0]}?lang=zh_TW")
                page.locator("#blacklist-form summary").click()
                page.fill("#blacklist-form input[name=reason]", "多次惡意訂位")
                page.fill("#blacklist-form input[name=until]",
                          (utcnow() + timedelta(days=60)).date().isoformat())
                page.locator("#blacklist-form button[type=submit]").click()
                expect(page.locator(".risk-flags [data-flag=blacklisted]")).to_contain_text(
                    "黑名單")
                _shot(page, f"customer-blacklisted-zh-{size}")
                page.locator("[data-action=lift]").click()
                expect(page.locator(".risk-flags")).to_have_count(0)
                ctx.close()
        finally:
            browser.close()
