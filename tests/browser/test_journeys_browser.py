"""The journey editor in a real Chromium: a marketer builds a journey from scratch on a phone
(zh-TW), adding actions one at a time and seeing an error beside the field at fault, then
edits it on a desktop (English) and marks a staff task done. Screenshots in test-artifacts/.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.customers.models import Customer
from omniloop.messaging import journeys
from omniloop.messaging.models import Journey
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.campaigns.factories import make_campaign
from tests.messaging.conftest import make_member
from tests.tenancy.factories import make_staff, make_tenant

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 860}}


def _fits(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page is wider than the screen")


def _shot(page: Any, name: str) -> None:
    _fits(page)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_marketer_builds_a_journey_on_a_phone_and_edits_it_on_a_desktop(
        live_server: str, database: Database, session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    tenant = make_tenant(session, slug="beanjourney", name="豆留森林咖啡")
    campaign = make_campaign(session, tenant, name="回娘家 100 元折價券")
    marketer = make_staff(session, tenant, Role.marketer, email="journeys@bean.tw")
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            phone = browser.new_context(**PHONE, locale="zh-TW", timezone_id="Asia/Taipei")
            page = phone.new_page()
            page.set_default_timeout(5000)
            sign_in(page, marketer.email, f"{live_server}/admin/messaging/journeys/new")
            expect(page.locator("h1")).to_have_text("新增旅程")
            # One action row to start with; the others come with "add another".
            expect(page.locator(".journey-action:visible")).to_have_count(1)
            page.fill("input[name=name]", "想念您：60 天未回訪")
            page.select_option("select[name=trigger]", "no_visit")
            page.fill("input[name=wait_value]", "0")
            page.select_option("select[name=consent]", "line")
            first = page.locator(".journey-action").nth(0)
            expect(first.locator("textarea[name=action_text]")).to_be_visible()
            expect(first.locator("input[name=action_points]")).to_be_hidden()
            first.locator("textarea[name=action_text]").fill("{name} 您好，好久不見！")
            page.click("#add-action")
            second = page.locator(".journey-action").nth(1)
            second.locator("select[name=action_kind]").select_option("coupon")
            expect(second.locator("select[name=action_campaign]")).to_be_visible()
            expect(second.locator("textarea[name=action_text]")).to_be_hidden()
            page.click("#add-action")
            third = page.locator(".journey-action").nth(2)
            third.locator("select[name=action_kind]").select_option("points")
            third.locator("input[name=action_points]").fill("abc")
            page.click("#add-action")
            fourth = page.locator(".journey-action").nth(3)
            fourth.locator("select[name=action_kind]").select_option("task")
            fourth.locator("input[name=action_title]").fill("請店長打電話問候 {name}")
            _shot(page, "journey-editor-phone-zh.png")
            page.click("button[type=submit].primary")
            # Refused: the points and the campaign, each beside its field; nothing lost.
            expect(page.locator(".notice.error")).to_be_visible()
            expect(page.locator('[id="error-actions.2.points"]')).to_be_visible()
            expect(page.locator("input[name=name]")).to_have_value("想念您：60 天未回訪")
            _shot(page, "journey-editor-errors-phone-zh.png")
            page.locator(".journey-action").nth(2).locator(
                "input[name=action_points]").fill("20")
            page.click("button[type=submit].primary")
            expect(page.locator('[id="error-actions.1.campaign_id"]')).to_be_visible()
            page.locator(".journey-action").nth(1).locator(
                "select[name=action_campaign]").select_option(campaign.id)
            page.click("button[type=submit].primary")
            expect(page.locator("h1")).to_have_text("想念您：60 天未回訪")
            expect(page.locator(".notice.ok")).to_have_text("已建立旅程。")
            expect(page.locator("[data-action-kind]")).to_have_count(4)
            _shot(page, "journey-detail-phone-zh.png")
            page.goto(f"{live_server}/admin/messaging/journeys")
            _shot(page, "journeys-list-phone-zh.png")

            session.rollback()
            journey = session.scalars(select(Journey).where(
                Journey.tenant_id == tenant.id)).one()
            assert journey.actions == [
                {"kind": "message", "channel": "line", "text": "{name} 您好，好久不見！"},
                {"kind": "coupon", "campaign_id": campaign.id},
                {"kind": "points", "points": 20},
                {"kind": "task", "title": "請店長打電話問候 {name}"}]

            # A task from the journey, for the desktop part.
            customer_id = make_member(session, tenant).id  # LINE friend, opted in
            session.get_one(Customer, (tenant.id, customer_id)).name = "林小姐"
            session.commit()
            with database.unit_of_work() as work:
                journeys.enter(work, tenant.id, "no_visit", customer_id, "no_visit:o1")
                journeys.run_due(work)

            desktop = browser.new_context(**DESKTOP, locale="en-US",
                                          storage_state=phone.storage_state())
            wide = desktop.new_page()
            wide.set_default_timeout(5000)
            wide.goto(f"{live_server}/admin/messaging/journeys?lang=en")
            expect(wide.locator("h1")).to_have_text("Journeys")
            expect(wide.locator(f'tr[data-journey="{journey.id}"] td[data-runs=done]')
                   ).to_have_text("1")
            _shot(wide, "journeys-list-desktop-en.png")
            wide.click(f'tr[data-journey="{journey.id}"] a.button')  # Edit
            expect(wide.locator("h1")).to_contain_text("Edit")
            expect(wide.locator(".journey-action:visible")).to_have_count(4)
            wide.select_option("select[name=wait_unit]", "days")
            wide.fill("input[name=wait_value]", "1")
            wide.locator(".journey-action").nth(0).locator(
                "select[name=action_channel]").select_option("email")
            expect(wide.locator(".journey-action").nth(0).locator(
                "input[name=action_subject]")).to_be_visible()
            wide.locator(".journey-action").nth(0).locator(
                "input[name=action_subject]").fill("We miss you")
            _shot(wide, "journey-editor-desktop-en.png")
            wide.click("button[type=submit].primary")
            expect(wide.locator(".notice.ok")).to_have_text("The journey was saved.")
            expect(wide.locator("dl.facts")).to_contain_text("1 d")
            _shot(wide, "journey-detail-desktop-en.png")

            wide.goto(f"{live_server}/admin/customers/{customer_id}")
            expect(wide.locator("#section-staff_tasks")).to_contain_text(
                "請店長打電話問候 林小姐")
            wide.locator("#section-staff_tasks").screenshot(
                path=str(ARTIFACTS / "staff-tasks-section-desktop-en.png"))
            wide.goto(f"{live_server}/admin/messaging/tasks")
            expect(wide.locator("tr[data-status=open]")).to_have_count(1)
            expect(wide.locator("td.title")).to_have_text("請店長打電話問候 林小姐")
            _shot(wide, "staff-tasks-desktop-en.png")
            wide.click("button[data-action=done]")
            expect(wide.locator(".notice.ok")).to_have_text("The task is marked done.")
            expect(wide.locator("tr[data-status=open]")).to_have_count(0)
            with database.unit_of_work(write=False) as read:
                assert read.get_one(Journey, (tenant.id, journey.id)).wait_minutes == 60 * 24
            wide.click("a[data-state=done]")
            expect(wide.locator("tr[data-status=done]")).to_have_count(1)
            _shot(wide, "staff-tasks-done-desktop-en.png")
        finally:
            browser.close()
