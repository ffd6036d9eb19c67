"""The journey editor (new, from a template, edit) with errors beside the fields, the staff
task list and the 360 section, and the journeys API with the new triggers and actions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.messaging import journeys
from omniloop.messaging.models import Journey, JourneyRun, StaffTask, StaffTaskStatus
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Role, Tenant
from tests.campaigns.factories import make_campaign
from tests.customers.factories import make_customer
from tests.tenancy.factories import bearer, make_api_key, make_staff, make_store
from tests.web.admin_helpers import csrf_from, login


def _signed_in(client: TestClient, session: Session, tenant: Tenant,
               role: Role = Role.marketer) -> str:
    stores = [make_store(session, tenant)] if role in (Role.store_manager, Role.cashier) else []
    staff = make_staff(session, tenant, role, stores)
    assert login(client, staff.email, brand=tenant.slug).status_code == 303
    return csrf_from(client.get("/admin/messaging/journeys").text)


def _form(csrf: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"csrf_token": csrf, "name": "生日祝福", "trigger": "birthday",
                            "wait_value": "2", "wait_unit": "hours", "consent": "line",
                            "tag": "", "action_kind": ["message", "", "", "", ""],
                            "action_channel": ["line"] * 5, "action_subject": [""] * 5,
                            "action_text": ["{name} 生日快樂", "", "", "", ""],
                            "action_campaign": [""] * 5, "action_points": [""] * 5,
                            "action_title": [""] * 5}
    data.update(fields)
    return data


def _journeys(session: Session, tenant: Tenant) -> list[Journey]:
    session.rollback()
    return list(session.scalars(select(Journey).where(Journey.tenant_id == tenant.id)))


def test_editor_creates_a_journey_from_scratch(client: TestClient, session: Session,
                                               tenant: Tenant) -> None:
    campaign = make_campaign(session, tenant)
    csrf = _signed_in(client, session, tenant)
    page = client.get("/admin/messaging/journeys/new")
    assert page.status_code == 200
    assert "生日" in page.text  # zh-TW by default: the trigger list is translated
    response = client.post("/admin/messaging/journeys/new", data=_form(
        csrf, action_kind=["message", "coupon", "points", "task", ""],
        action_campaign=["", campaign.id, "", "", ""], action_points=["", "", "３０", "", ""],
        action_title=["", "", "", "打電話祝 {name} 生日快樂", ""]), follow_redirects=False)
    assert response.status_code == 303, response.text
    [journey] = _journeys(session, tenant)
    assert response.headers["location"].startswith(f"/admin/messaging/journeys/{journey.id}")
    assert (journey.trigger, journey.wait_minutes, journey.condition) == (
        "birthday", 120, {"consent": "line"})
    assert journey.actions == [
        {"kind": "message", "channel": "line", "text": "{name} 生日快樂"},
        {"kind": "coupon", "campaign_id": campaign.id},
        {"kind": "points", "points": 30},
        {"kind": "task", "title": "打電話祝 {name} 生日快樂"}]
    detail = client.get(response.headers["location"])
    assert detail.status_code == 200
    assert campaign.name in detail.text


def test_editor_shows_errors_beside_the_fields(client: TestClient, session: Session,
                                              tenant: Tenant) -> None:
    csrf = _signed_in(client, session, tenant)
    response = client.post("/admin/messaging/journeys/new", data=_form(
        csrf, name="", wait_value="abc", action_kind=["message", "points", "", "", ""],
        action_points=["", "0", "", "", ""]))
    assert response.status_code == 422
    for field in ("name", "wait_minutes", "actions.1.points"):
        assert f'id="error-{field}"' in response.text, field
    assert 'value="abc"' in response.text  # what was typed stays
    # The service's refusals land beside their field too, in the row they were typed in.
    refused = client.post("/admin/messaging/journeys/new", data=_form(
        csrf, action_kind=["", "", "coupon", "", ""],
        action_campaign=["", "", "", "", ""]))
    assert refused.status_code == 422
    assert 'id="error-actions.2.campaign_id"' in refused.text
    email = client.post("/admin/messaging/journeys/new", data=_form(
        csrf, action_channel=["email"] * 5))
    assert email.status_code == 422
    assert 'id="error-actions.0.subject"' in email.text
    empty = client.post("/admin/messaging/journeys/new", data=_form(
        csrf, action_kind=[""] * 5))
    assert empty.status_code == 422
    assert 'id="error-actions"' in empty.text
    bad_trigger = client.post("/admin/messaging/journeys/new", data=_form(
        csrf, trigger="anniversary"))
    assert bad_trigger.status_code == 422
    assert 'id="error-trigger"' in bad_trigger.text
    assert _journeys(session, tenant) == []


def test_editor_refuses_without_csrf_and_for_cashiers(client: TestClient, session: Session,
                                                      tenant: Tenant) -> None:
    csrf = _signed_in(client, session, tenant)
    assert client.post("/admin/messaging/journeys/new",
                       data=_form("not-the-token")).status_code == 403
    data = _form(csrf)
    del data["csrf_token"]
    assert client.post("/admin/messaging/journeys/new", data=data).status_code == 403
    assert _journeys(session, tenant) == []
    client.cookies.clear()
    _signed_in(client, session, tenant, Role.store_manager)
    assert client.get("/admin/messaging/journeys/new").status_code == 403


def test_editor_edits_a_journey_and_opens_templates(client: TestClient, session: Session,
                                                    tenant: Tenant, database: Database) -> None:
    csrf = _signed_in(client, session, tenant)
    with database.unit_of_work() as work:
        journey_id = journeys.from_template(work, system_actor(tenant.id), "no_visit_miss_you").id
    page = client.get(f"/admin/messaging/journeys/{journey_id}/edit")
    assert page.status_code == 200
    assert "好久不見" in page.text
    saved = client.post(f"/admin/messaging/journeys/{journey_id}/edit", data=_form(
        csrf, name="想念您", trigger="no_visit", wait_value="1", wait_unit="days",
        consent="", tag="vip"), follow_redirects=False)
    assert saved.status_code == 303
    [journey] = _journeys(session, tenant)
    assert (journey.name, journey.wait_minutes, journey.condition) == (
        "想念您", 60 * 24, {"tag": "vip"})
    bad = client.post(f"/admin/messaging/journeys/{journey_id}/edit", data=_form(
        csrf, action_kind=["task", "", "", "", ""], action_title=[" ", "", "", "", ""]))
    assert bad.status_code == 422
    assert 'id="error-actions.0.title"' in bad.text
    assert client.get("/admin/messaging/journeys/nope/edit").status_code == 404
    # A template that gives a coupon opens in the editor, to pick the campaign.
    opened = client.post("/admin/messaging/journeys/from-template", data={
        "csrf_token": csrf, "template": "low_feedback_make_good"}, follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"].endswith("/journeys/new?template=low_feedback_make_good")
    editor = client.get(opened.headers["location"])
    assert editor.status_code == 200
    assert "很抱歉這次沒讓您滿意" in editor.text
    listed = client.get("/admin/messaging/journeys")
    assert 'href="/admin/messaging/journeys/new?template=low_feedback_make_good"' in listed.text
    assert f'href="/admin/messaging/journeys/{journey_id}/edit"' in listed.text


def test_staff_tasks_page_and_customer_section(client: TestClient, session: Session,
                                               tenant: Tenant, database: Database) -> None:
    csrf = _signed_in(client, session, tenant)
    customer_id = make_customer(session, tenant, ("phone", "0912000099"))
    with database.unit_of_work() as work:
        journeys.create_journey(work, system_actor(tenant.id), name="t", trigger="purchase",
                                actions=[{"kind": "task", "title": "歡迎回來"}])
        journeys.enter(work, tenant.id, "purchase", customer_id, "order:x")
        journeys.run_due(work)
    page = client.get("/admin/messaging/tasks")
    assert page.status_code == 200
    assert "歡迎回來" in page.text
    task = session.scalars(select(StaffTask)).one()
    profile = client.get(f"/admin/customers/{customer_id}")
    assert 'id="section-staff_tasks"' in profile.text
    assert "歡迎回來" in profile.text
    assert client.post(f"/admin/messaging/tasks/{task.id}/done",
                       data={"back": f"/admin/customers/{customer_id}"}).status_code == 403
    done = client.post(f"/admin/messaging/tasks/{task.id}/done", data={
        "csrf_token": csrf, "back": f"/admin/customers/{customer_id}"}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/admin/customers/{customer_id}?done=")
    session.rollback()
    assert session.get_one(StaffTask, (tenant.id, task.id)).status is StaffTaskStatus.done
    elsewhere = client.post(f"/admin/messaging/tasks/{task.id}/done", data={
        "csrf_token": csrf, "back": "https://evil.example/"}, follow_redirects=False)
    assert elsewhere.headers["location"].startswith("/admin/messaging/tasks?")
    assert client.post("/admin/messaging/tasks/nope/done",
                       data={"csrf_token": csrf}).status_code == 404
    done_list = client.get("/admin/messaging/tasks?state=done")
    assert re.search(r'data-status="done"', done_list.text)
    assert 'class="tabs messaging-tabs"' in done_list.text  # a marketer's messaging pages


def test_cashiers_see_their_tasks_without_the_messaging_pages_they_cannot_open(
        client: TestClient, session: Session, tenant: Tenant) -> None:
    stores = [make_store(session, tenant)]
    cashier = make_staff(session, tenant, Role.cashier, stores)
    assert login(client, cashier.email, brand=tenant.slug).status_code == 303
    page = client.get("/admin/messaging/tasks")
    assert page.status_code == 200
    assert 'class="tabs messaging-tabs"' not in page.text
    assert 'href="/admin/messaging/settings"' not in page.text
    assert client.get("/admin/messaging").status_code == 403


def test_api_creates_and_updates_journeys_with_new_triggers(
        client: TestClient, session: Session, tenant: Tenant, database: Database) -> None:
    key = bearer(make_api_key(session, tenant))
    campaign = make_campaign(session, tenant)
    body: dict[str, Any] = {
        "name": "差評補償", "trigger": "low_feedback",
        "actions": [{"kind": "task", "title": "致電 {name}"},
                    {"kind": "coupon", "campaign_id": campaign.id}]}
    created = client.post("/api/v1/journeys", headers=key, json=body)
    assert created.status_code == 201, created.text
    journey_id = created.json()["id"]
    for trigger in journeys.SCANNED_TRIGGERS:
        response = client.post("/api/v1/journeys", headers=key, json=body | {"trigger": trigger})
        assert response.status_code == 201, (trigger, response.text)
    bad = client.post("/api/v1/journeys", headers=key, json=body | {
        "actions": [{"kind": "coupon", "campaign_id": "0" * 26}]})
    assert bad.status_code == 422
    assert bad.json()["error"] | {"message": ""} == {
        "code": "journey_invalid", "field": "actions.0.campaign_id", "message": ""}
    no_title = client.post("/api/v1/journeys", headers=key, json=body | {
        "actions": [{"kind": "task"}]})
    assert no_title.status_code == 422
    assert no_title.json()["error"]["field"] == "actions.0.title"
    updated = client.put(f"/api/v1/journeys/{journey_id}", headers=key,
                         json=body | {"name": "差評關懷", "wait_minutes": 30})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["name"], updated.json()["wait_minutes"]) == ("差評關懷", 30)
    assert client.put("/api/v1/journeys/nope", headers=key, json=body).status_code == 404
    other = make_api_key(session, make_tenant_for(session))
    assert client.put(f"/api/v1/journeys/{journey_id}", headers=bearer(other),
                      json=body).status_code == 404
    # Staff tasks over the API.
    customer_id = make_customer(session, tenant, ("phone", "0912000098"))
    with database.unit_of_work() as work:
        journeys.enter(work, tenant.id, "low_feedback", customer_id, "feedback:x")
        journeys.run_due(work, now=utcnow() + timedelta(minutes=31))  # the 30-minute wait
    assert session.scalars(select(JourneyRun)).first() is not None
    listed = client.get("/api/v1/staff-tasks?status=open", headers=key)
    assert listed.status_code == 200
    [task] = listed.json()
    assert task["title"] == "致電 "  # nameless customer
    done = client.post(f"/api/v1/staff-tasks/{task['id']}/done", headers=key)
    assert done.status_code == 200
    assert done.json()["status"] == "done"
    assert client.get("/api/v1/staff-tasks?status=open", headers=key).json() == []
    assert client.get("/api/v1/staff-tasks?status=bogus", headers=key).status_code == 422


def make_tenant_for(session: Session) -> Tenant:
    from tests.tenancy.factories import make_tenant

    return make_tenant(session)
