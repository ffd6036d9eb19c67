"""The loop's admin pages changed for retiring touchpoints, referral expiry and low-score
alerts, in Chromium on a phone and a desktop: retire a scanned table through the confirm
page, find it under the "retired" filter, read pending and expired referrals and the alert's
task link. Screenshots land in test-artifacts/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.loops.feedback import submit_feedback
from omniloop.loops.models import Purpose, Referral, Touchpoint
from omniloop.loops.referrals import code_for, refer
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.browser.conftest import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, sign_in
from tests.customers.factories import make_customer
from tests.loops.factories import make_shop, make_touchpoint
from tests.tenancy.factories import fresh, make_staff

pytestmark = pytest.mark.browser
VIEWS = {
    "phone": {"viewport": {"width": 390, "height": 844}, "has_touch": True,
              "is_mobile": True},
    "desktop": {"viewport": {"width": 1280, "height": 900}},
}


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's Chromium at /usr/bin/chromium (apt install chromium)")
def test_retire_referral_standing_and_task_link(live_server: str, database: Database,
                                                session: Session) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    shop = make_shop(session, slug="beanhouse", qualify_days=7)
    tables = [make_touchpoint(session, shop, Purpose.membership, number=n) for n in (1, 2)]
    fresh(session)
    for touchpoint in tables:  # both scanned: they are retired, not deleted
        session.execute(update(Touchpoint).where(Touchpoint.id == touchpoint.id)
                        .values(scans=12))
    session.commit()
    unused = make_touchpoint(session, shop, Purpose.review, number=None,
                             target_url="https://maps.example/review")
    owner = make_staff(session, shop.tenant, Role.owner)
    member = make_customer(session, shop.tenant, ("phone", "0912345678"))
    actor = system_actor(shop.tenant.id)
    for phone, days in (("+886911000001", 9), ("+886911000002", 1)):
        with database.unit_of_work() as work:
            made = refer(work, actor, code_for(work, actor, member), phone, None).referral
        with database.unit_of_work() as work:
            at = utcnow() - timedelta(days=days)
            work.execute(update(Referral).where(Referral.id == made.id).values(
                created_at=at, qualify_by=at + timedelta(days=7)))
    with database.unit_of_work() as work:
        task = submit_feedback(work, actor, customer_id=member, rating=1, nps=2,
                               comment="湯是冷的", store_id=shop.store.id,
                               touchpoint_id=None).task
        assert task is not None
        task_id = task.id
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            for view, options in VIEWS.items():
                page = browser.new_context(locale="zh-TW", timezone_id="Asia/Taipei",
                                           **options).new_page()  # type: ignore[arg-type]
                page.set_default_timeout(5000)
                sign_in(page, owner.email, f"{live_server}/admin/login")
                table = tables[0] if view == "phone" else tables[1]
                page.goto(f"{live_server}/admin/loops/touchpoints")
                row = page.locator(f'tr[data-code="{table.code}"]')
                expect(row.locator("[data-scans]")).to_have_text("12")
                row.get_by_role("link", name="退役").click()
                expect(page.locator("h1")).to_have_text("退役觸點")
                page.screenshot(path=str(ARTIFACTS / f"loops-retire-confirm-{view}.png"),
                                full_page=True)
                page.get_by_role("button", name="退役此觸點").click()
                expect(page.locator(".notice.ok")).to_contain_text("觸點已退役")
                expect(page.locator(f'tr[data-code="{table.code}"]')).to_have_count(0)
                page.screenshot(path=str(ARTIFACTS / f"loops-touchpoints-{view}.png"),
                                full_page=True)
                page.select_option("select[name=show]", "retired")
                expect(page.locator(f'tr[data-code="{table.code}"]')).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / f"loops-touchpoints-retired-{view}.png"),
                                full_page=True)
                # The one never scanned offers deletion instead.
                page.goto(f"{live_server}/admin/loops/touchpoints/{unused.id}/remove")
                expect(page.locator("h1")).to_have_text("刪除觸點")
                page.screenshot(path=str(ARTIFACTS / f"loops-delete-confirm-{view}.png"),
                                full_page=True)
                page.goto(f"{live_server}/admin/loops/referrals")
                expect(page.locator('tr[data-status="expired"]')).to_have_count(1)
                expect(page.locator('tr[data-status="pending"]')).to_have_count(1)
                page.screenshot(path=str(ARTIFACTS / f"loops-referrals-{view}.png"),
                                full_page=True)
                page.goto(f"{live_server}/admin/loops/report")
                page.screenshot(path=str(ARTIFACTS / f"loops-report-{view}.png"),
                                full_page=True)
                # The alert's link opens the feedback page at the task.
                page.goto(f"{live_server}/admin/loops/feedback#task-{task_id}")
                expect(page.locator(f"#task-{task_id}")).to_be_in_viewport()
                page.screenshot(path=str(ARTIFACTS / f"loops-feedback-task-{view}.png"))
                page.context.close()
        finally:
            browser.close()
