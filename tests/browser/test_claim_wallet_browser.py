"""End to end on a phone: open a claim link from LINE, type a number, land in the wallet, and
the QR code on the screen is a genuine coupon token that the POS API redeems.

The QR is read from a real screenshot of the page, decoded with zxing-cpp, so what is tested
is what a counter scanner sees: size, quiet zone and all. Neither numpy nor PIL is a
dependency, so Chromium's PNG is decoded here with the standard library (zlib).
"""

from __future__ import annotations

import struct
import zlib
from datetime import timedelta

import pytest
import zxingcpp
from sqlalchemy import select

from omniloop.campaigns.models import Coupon, CouponStatus
from omniloop.core.clock import utcnow
from omniloop.core.db import Session
from omniloop.core.tokens import TokenKind, verify_token
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import fresh, make_api_key, make_store, make_tenant

pytestmark = pytest.mark.browser


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_to_grey(data: bytes) -> memoryview:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's screenshots are) as a 2-D
    grey image zxing-cpp reads: 0 black, 255 white; transparent pixels count as white."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    header: tuple[int, ...] = ()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert (depth, interlace) == (8, 0), header
    assert color in (2, 6), header
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    grey = bytearray()
    for y in range(height):
        start = y * (stride + 1)
        filter_type, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if filter_type == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif filter_type == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif filter_type == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
        elif filter_type == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upper_left = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, previous[i], upper_left)) & 0xFF
        for x in range(0, stride, bpp):
            r, g, b = line[x], line[x + 1], line[x + 2]
            alpha = line[x + 3] if bpp == 4 else 255
            value = (r * 299 + g * 587 + b * 114) // 1000
            grey.append((value * alpha + 255 * (255 - alpha)) // 255)
        previous = line
    return memoryview(bytes(grey)).cast("B", (height, width))


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_claim_on_a_phone_and_redeem_the_scanned_qr(live_server: str, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    make_store(session, tenant, code="TPE01", name="信義旗艦店",
               address="台北市信義區松壽路 11 號")
    make_store(session, tenant, code="TPE02", name="大安店",
               address="台北市大安區忠孝東路四段 181 號", latitude=25.0415, longitude=121.5503)
    key = make_api_key(session, tenant, scopes=["pos"])
    campaign = make_campaign(
        session, tenant, name="秋季拿鐵 NT$100 折價券", min_spend_minor=30000,
        description="秋天就是要來杯熱拿鐵。領取後出示 QR Code 即可折抵。",
        terms="1. 每人限領一張、限用一次。\n2. 不得與其他優惠併用。\n3. 本公司保留活動變更之權利。",
        ends_at=(utcnow() + timedelta(days=60)).isoformat())
    link = (f"/c/{tenant.slug}/claim/{campaign.id}?channel=line&utm_source=line_oa"
            "&utm_medium=message&utm_campaign=autumn-latte&tp=rich-menu")
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

            page.goto(live_server + link)
            expect(page.locator("html")).to_have_attribute("lang", "zh-Hant-TW")
            expect(page.locator("h1")).to_have_text("秋季拿鐵 NT$100 折價券")
            expect(page.locator(".c-brand")).to_have_text("豆留森林咖啡")
            expect(page.locator(".c-value")).to_have_text("折抵 $100")
            expect(page.locator("input[name=utm_campaign]")).to_have_value("autumn-latte")
            phone = page.locator("input[name=phone]")
            expect(phone).to_have_attribute("type", "tel")
            button = page.locator("button[type=submit]")
            expect(button).to_have_text("領取優惠券")
            expect(page.locator(".c-stores a.c-map").last).to_have_attribute(
                "href", "https://www.google.com/maps/search/?api=1&query=25.0415%2C121.5503")
            box = button.bounding_box()
            assert box is not None
            assert box["height"] >= 44  # a comfortable tap target
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "claim-zh.png"), full_page=True)

            phone.fill("0912 345")
            button.tap()
            expect(page.locator("#error-phone")).to_contain_text("不是可以使用的手機號碼")
            expect(phone).to_have_value("0912 345")
            expect(phone).to_have_attribute("aria-invalid", "true")
            page.screenshot(path=str(ARTIFACTS / "claim-phone-error-zh.png"), full_page=True)

            phone.fill("0912 345 678")
            button.tap()
            page.wait_for_url("**/wallet/**")
            coupon_card = page.locator(".c-coupon").first
            expect(coupon_card).to_have_attribute("data-state", "usable")
            expect(coupon_card.locator(".c-flash")).to_have_text("已加入您的票夾。")
            expect(coupon_card.locator(".c-state")).to_have_text("可使用")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "wallet-zh.png"), full_page=True)

            fresh(session)
            coupon = session.scalars(select(Coupon).where(
                Coupon.tenant_id == tenant.id, Coupon.campaign_id == campaign.id)).one()
            assert coupon.claim_channel == "line"
            assert coupon.attribution is not None
            assert coupon.attribution["touchpoint"] == "rich-menu"
            expect(coupon_card.locator("[data-code]")).to_have_text(coupon.code or "")

            qr = coupon_card.locator(".c-qr svg")
            qr_box = qr.bounding_box()
            assert qr_box is not None
            assert qr_box["width"] >= 220
            assert qr_box["height"] >= 220
            png = qr.screenshot(type="png", path=str(ARTIFACTS / "wallet-qr.png"))
            found = zxingcpp.read_barcodes(png_to_grey(png))
            assert len(found) == 1, "no QR code read from the screenshot"
            scanned = found[0].text
            claims = verify_token(scanned, tenant_id=tenant.id, kind=TokenKind.COUPON)
            assert claims.subject_id == coupon.id

            redeemed = page.request.post(
                live_server + "/api/v1/pos/redeem",
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "till-1-0001"},
                data={"code": scanned, "store_code": "TPE01", "basket_total_minor": 45000})
            assert redeemed.status == 201, redeemed.text()
            assert redeemed.json()["discount_minor"] == 10000

            page.reload()
            coupon_card = page.locator(".c-coupon").first
            expect(coupon_card).to_have_attribute("data-state", "redeemed")
            expect(coupon_card.locator(".c-state")).to_have_text("已使用")
            expect(coupon_card.locator(".c-status-line")).to_contain_text("信義旗艦店")
            expect(coupon_card.locator(".c-qr")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "wallet-used-zh.png"), full_page=True)

            page.click("a[data-lang=en]")
            expect(page.locator("h1")).to_have_text("My coupons")
            expect(page.locator(".c-coupon .c-state").first).to_have_text("Already used")
            page.screenshot(path=str(ARTIFACTS / "wallet-used-en.png"), full_page=True)
            wallet_url = page.url

            desktop = browser.new_context(viewport={"width": 1280, "height": 800},
                                          locale="en-US", timezone_id="Asia/Taipei")
            wide = desktop.new_page()
            wide.goto(live_server + link + "&lang=en")
            expect(wide.locator("button[type=submit]")).to_have_text("Get the coupon")
            wide.screenshot(path=str(ARTIFACTS / "claim-en-desktop.png"), full_page=True)
            wide.goto(wallet_url)
            expect(wide.locator("h1")).to_have_text("My coupons")
            assert wide.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            wide.screenshot(path=str(ARTIFACTS / "wallet-en-desktop.png"), full_page=True)
        finally:
            browser.close()
    fresh(session)
    stored = session.get(Coupon, (tenant.id, coupon.id))
    assert stored is not None
    assert stored.status == CouponStatus.redeemed


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_closed_offer_and_bad_links_on_a_phone(live_server: str, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    start = utcnow() + timedelta(days=5)
    campaign = make_campaign(session, tenant, name="聖誕節限定 85 折",
                             kind="percent_off", percent_off=15, max_discount_minor=20000,
                             value_minor=None, starts_at=start.isoformat(),
                             ends_at=(start + timedelta(days=20)).isoformat())
    popular = make_campaign(session, tenant, name="前 1 名送蛋糕", kind="gift", value_minor=None,
                            gift_name="巴斯克乳酪蛋糕", quota=1)
    claim_for(session, tenant, popular, phone="0987654321")
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
            page.goto(f"{live_server}/c/{tenant.slug}/claim/{campaign.id}")
            expect(page.locator("[data-closed=scheduled]")).to_contain_text("開放領取")
            expect(page.locator("input[name=phone]")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "claim-not-started-zh.png"), full_page=True)

            page.goto(f"{live_server}/c/{tenant.slug}/claim/{popular.id}?lang=en")
            expect(page.locator("[data-closed=exhausted]")).to_contain_text("all coupons")
            expect(page.locator("button[type=submit]")).to_have_text("Open my coupons")
            page.screenshot(path=str(ARTIFACTS / "claim-all-claimed-en.png"), full_page=True)
            page.locator("input[name=phone]").fill("0987654321")
            page.locator("button[type=submit]").tap()
            # Claimed elsewhere (not from this browser): the number is not verified, so
            # the page says the offer is held without opening that person's wallet.
            expect(page.locator("body")).to_contain_text("This number already holds this offer")
            assert "/wallet/" not in page.url

            page.goto(f"{live_server}/c/{tenant.slug}/wallet/not-a-real-token?lang=zh_TW")
            expect(page.locator("h1")).to_have_text("找不到網頁")
            page.screenshot(path=str(ARTIFACTS / "wallet-not-found-zh.png"), full_page=True)
        finally:
            browser.close()
