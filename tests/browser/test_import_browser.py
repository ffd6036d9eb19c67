"""End to end: upload a member list in the admin and follow the import to its result.

Screenshots of the finished job page (with its error table) go to `test-artifacts/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omniloop.core.db import Session
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.imports.factories import csv_file
from tests.tenancy.factories import make_staff, make_store, make_tenant

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's Chromium at /usr/bin/chromium"),
]


def member_list(rows: int) -> bytes:
    """A Big5 member list as Excel on a Taiwanese Windows saves it, with a few bad rows."""
    lines = ["會員卡號,姓名,行動電話,生日,性別,門市,備註"]
    for i in range(1, rows + 1):
        phone = f"09{i:08d}"
        birthday = f"{60 + i % 30}/{1 + i % 12:02d}/{1 + i % 28:02d}"  # ROC dates
        lines.append(f"M{i:05d},會員{i},{phone},{birthday},{'女' if i % 2 else '男'},TPE01,")
    lines[3] = "M00003,會員3,12345,80/03/08,女,TPE01,電話號碼太短"
    lines[5] = "M00005,會員5,0912000005,80/02/30,女,TPE01,沒有二月三十日"
    lines[8] = "M00008,會員8,0912000008,1990/01/01,不明,TPE99,門市與性別都錯"
    lines[13] = ",,,,,,這一列沒有任何識別資料"
    return csv_file(*lines, encoding="cp950")


def test_upload_follow_progress_and_read_the_errors(live_server: str, session: Session,
                                                   tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    tenant = make_tenant(session, slug="beanhouse", name="豆留森林咖啡")
    make_store(session, tenant, code="TPE01", name="信義店")
    owner = make_staff(session, tenant, Role.owner, email="owner@bean.tw")
    source = tmp_path / "會員名單.csv"
    source.write_bytes(member_list(1500))
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800},
                                          locale="zh-TW", timezone_id="Asia/Taipei")
            page = context.new_page()
            page.set_default_timeout(30000)
            expect = sync_api.expect

            sign_in(page, owner.email, f"{live_server}/admin/imports")
            expect(page.locator("h1")).to_have_text("匯入顧客或訂單")
            expect(page.locator("nav.nav a[aria-current=page]")).to_have_text("匯入")

            page.set_input_files("input[name=file]", str(source))
            page.check("input[name=skip_bad_rows]")
            page.click("details.panel summary")
            page.screenshot(path=str(ARTIFACTS / "admin-imports-form-zh.png"), full_page=True)
            seen: list[dict[str, Any]] = []

            def watch_status(route: Any) -> None:
                response = route.fetch()
                seen.append(json.loads(response.text()))
                route.fulfill(response=response)

            page.route("**/status", watch_status)
            page.click("button[type=submit].primary")
            expect(page.locator("progress#import-progress")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "admin-import-running-zh.png"))
            # The page polls until the import is done, then reloads itself with the result.
            expect(page.locator(".notice.ok")).to_be_visible(timeout=60000)
            percents = [state["percent"] for state in seen]
            assert percents == sorted(percents), percents  # the bar only moves forward
            assert seen[-1]["percent"] == 100
            assert seen[-1]["status"] == "done"
            expect(page.locator(".notice.ok")).to_have_text("已匯入。下方有錯誤的列已略過。")
            expect(page.locator("[data-count=created] .figure")).to_have_text("1,496")
            expect(page.locator("[data-count=skipped] .figure")).to_have_text("4")
            rows = page.locator("table.import-errors tbody tr")
            expect(rows).to_have_count(5)
            expect(rows.nth(0)).to_contain_text("行動電話")
            expect(page.locator("tr[data-row='9']").first).to_contain_text("「不明」不是性別")
            page.screenshot(path=str(ARTIFACTS / "admin-import-job-zh.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"), (
                "the page is wider than a phone screen")
            page.screenshot(path=str(ARTIFACTS / "admin-import-job-phone.png"), full_page=True)

            with page.expect_download() as download:
                page.click("a[href$='/errors.csv']")
            text = Path(download.value.path()).read_bytes().decode("utf-8-sig")
            assert text.splitlines()[0] == "row,column,reason"
            assert len(text.splitlines()) == 6
            context.close()

            # Without JavaScript the page refreshes itself until the import is done.
            quiet = browser.new_context(java_script_enabled=False, locale="zh-TW",
                                        viewport={"width": 1280, "height": 800})
            page = quiet.new_page()
            page.set_default_timeout(60000)
            sign_in(page, owner.email, f"{live_server}/admin/login")
            page.goto(f"{live_server}/admin/imports")
            source.write_bytes(member_list(1500).replace(b"TPE99", b"TPE01"))
            page.set_input_files("input[name=file]", str(source))
            page.click("button[type=submit].primary")
            expect(page.locator(".notice.error")).to_contain_text("沒有匯入任何資料")
            expect(page.locator("table.import-errors tbody tr")).to_have_count(4)
            quiet.close()
        finally:
            browser.close()
