"""Service recovery: a low score opens a task; a person offers the make-good coupon."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.campaigns.models import Coupon
from omniloop.core.db import Session
from omniloop.loops import program as program_service
from omniloop.loops.errors import MakeGoodUnavailable, RatingOutOfRange
from omniloop.loops.feedback import offer_make_good, submit_feedback
from omniloop.loops.models import RecoveryTask, TaskStatus
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role
from tests.campaigns.factories import make_campaign
from tests.customers.factories import make_customer
from tests.loops.factories import make_shop
from tests.tenancy.factories import fresh, make_staff
from tests.web.admin_helpers import csrf_from, login


def test_low_score_task_make_good_and_status(client: TestClient, session: Session) -> None:
    shop = make_shop(session)
    actor = system_actor(shop.tenant.id)
    customer = make_customer(session, shop.tenant, ("phone", "0912345678"))
    fresh(session)
    with pytest.raises(RatingOutOfRange):
        submit_feedback(session, actor, customer_id=customer, rating=True, nps=None,
                        comment="", store_id=shop.store.id, touchpoint_id=None)
    result = submit_feedback(session, actor, customer_id=customer, rating=1, nps=None,
                             comment="冷掉了", store_id=shop.store.id, touchpoint_id=None)
    assert result.task is not None
    task_id = result.task.id
    session.commit()
    fresh(session)
    with pytest.raises(MakeGoodUnavailable):
        offer_make_good(session, actor, task_id)
    session.rollback()
    sorry = make_campaign(session, shop.tenant, name="招待一杯飲料", value_minor=12000)
    fresh(session)
    program = program_service.get_program(session, shop.tenant.id)
    program_service.update_program(session, actor, program_service.ProgramData(
        welcome_campaign_id=program.welcome_campaign_id, make_good_campaign_id=sorry.id))
    session.commit()
    owner = make_staff(session, shop.tenant, Role.owner)
    login(client, owner.email)
    page = client.get("/admin/loops/feedback")
    assert task_id in page.text
    assert "冷掉了" in page.text
    for _ in range(2):  # offered twice: one coupon
        sent = client.post(f"/admin/loops/tasks/{task_id}/make-good",
                           data={"csrf_token": csrf_from(page.text)}, follow_redirects=False)
        assert sent.status_code == 303
    fresh(session)
    coupons = list(session.scalars(select(Coupon).where(Coupon.campaign_id == sorry.id)))
    assert [c.customer_id for c in coupons] == [customer]
    task = session.get(RecoveryTask, (shop.tenant.id, task_id))
    assert task is not None
    assert (task.status, task.make_good_coupon_id) == (TaskStatus.in_progress, coupons[0].id)
    done = client.post(f"/admin/loops/tasks/{task_id}", data={
        "csrf_token": csrf_from(page.text), "status_value": "resolved", "note": "已致電道歉"},
        follow_redirects=False)
    assert done.status_code == 303
    fresh(session)
    task = session.get(RecoveryTask, (shop.tenant.id, task_id))
    assert task is not None
    assert (task.status, task.note) == (TaskStatus.resolved, "已致電道歉")


def test_export_and_erasure_cover_the_loop(session: Session) -> None:
    from omniloop.customers.privacy import erase_customer, export_customer
    from omniloop.loops.feedback import submit_feedback as give
    from omniloop.loops.models import Feedback, ReferralCode
    from omniloop.loops.referrals import code_for

    shop = make_shop(session)
    actor = system_actor(shop.tenant.id)
    customer = make_customer(session, shop.tenant, ("phone", "0912345678"))
    fresh(session)
    give(session, actor, customer_id=customer, rating=4, nps=8, comment="我是王小明 0912345678",
         store_id=shop.store.id, touchpoint_id=None)
    code = code_for(session, actor, customer)
    session.commit()
    fresh(session)
    exported = export_customer(session, actor, customer)["loop"]
    assert exported["referral_codes"] == [code]
    assert exported["feedback"][0]["comment"] == "我是王小明 0912345678"
    erase_customer(session, actor, customer, "customer asked")
    session.commit()
    fresh(session)
    (feedback,) = session.scalars(select(Feedback))
    assert (feedback.rating, feedback.comment) == (4, "")
    assert session.scalars(select(ReferralCode)).first() is None
