"""Saved message templates: checked as a send's content (unknown variables refused with the
field at fault), the API (another brand's are 404, cashiers' keys may not), the admin pages
(field errors, CSRF, live preview, delete), and using one: a send from a template delivers
its rendered content, and a later change to the template changes nothing already sent."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omniloop.core.db import Database, Session
from omniloop.customers.models import Customer
from omniloop.messaging import journeys, templates
from omniloop.messaging.dispatch import Dispatcher
from omniloop.messaging.errors import (
    MessageContentInvalid,
    MessageTemplateInvalid,
    UnknownVariable,
)
from omniloop.messaging.models import (
    Journey,
    MessageSend,
    MessageTemplate,
    OutboxChannel,
    OutboxMessage,
)
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Role, Tenant
from tests.messaging.conftest import make_member
from tests.messaging.standins import LineStandIn
from tests.tenancy.factories import bearer, make_api_key, make_staff, make_store, make_tenant
from tests.web.admin_helpers import csrf_from, login

HELLO = "{name} 您好，本週拿鐵第二杯半價！"


def _sign_in(client: TestClient, session: Session, tenant: Tenant,
             role: Role = Role.marketer) -> None:
    stores = [make_store(session, tenant)] if role is Role.cashier else None
    staff = make_staff(session, tenant, role, stores)
    assert login(client, staff.email, brand=tenant.slug).status_code == 303


# --- the service --------------------------------------------------------------------------


def test_content_is_checked_as_a_send_checks_it(session: Session, tenant: Tenant) -> None:
    actor = system_actor(tenant.id)
    with pytest.raises(UnknownVariable) as unknown:
        templates.create_template(session, actor, name="x", channel="line",
                                  text="嗨 {nickname}")
    assert unknown.value.code == "message_content_invalid"
    assert unknown.value.status == 422
    assert unknown.value.field == "text"
    assert "{nickname}" in str(unknown.value)
    assert "{name}, {claim_url}, {wallet_url}, {unsubscribe_url}" in str(unknown.value)
    with pytest.raises(UnknownVariable) as in_subject:
        templates.create_template(session, actor, name="x", channel="email",
                                  subject="{coupon}", text="hi")
    assert in_subject.value.field == "subject"
    with pytest.raises(MessageTemplateInvalid) as no_subject:
        templates.create_template(session, actor, name="x", channel="email", text="hi")
    assert no_subject.value.field == "subject"
    # The channel's own limits (service.payload_for): a LINE text is at most 5,000 characters.
    with pytest.raises(MessageContentInvalid) as too_long:
        templates.create_template(session, actor, name="x", channel="line", text="長" * 5001)
    assert too_long.value.field == "text"
    with pytest.raises(MessageTemplateInvalid) as no_channel:
        templates.create_template(session, actor, name="x", channel="webhook", text="hi")
    assert no_channel.value.field == "channel"

    saved = templates.create_template(session, actor, name="週末", channel="email",
                                      subject="{name}，週末見", text=HELLO,
                                      html="<p>{name}</p>", title="dropped for e-mail")
    assert templates.content_of(saved) == {"text": HELLO, "subject": "{name}，週末見",
                                           "html": "<p>{name}</p>"}
    with pytest.raises(MessageTemplateInvalid) as taken:
        templates.create_template(session, actor, name="週末", channel="sms", text="hi")
    assert taken.value.field == "name"
    # Saving it again under its own name is no clash.
    templates.update_template(session, actor, saved.id, name="週末", channel="sms", text="hi")
    assert templates.content_of(saved) == {"text": "hi"}
    session.commit()
    actions = set(session.scalars(select(AuditEntry.action).where(
        AuditEntry.tenant_id == tenant.id, AuditEntry.entity_type == "message_template")))
    assert actions == {"message_template.create", "message_template.update"}


# --- the API ------------------------------------------------------------------------------


def test_templates_over_the_api(client: TestClient, session: Session, tenant: Tenant) -> None:
    key = bearer(make_api_key(session, tenant))
    created = client.post("/api/v1/message-templates", headers=key, json={
        "name": "生日", "channel": "line", "text": "{name} 生日快樂！", "title": "生日禮"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["channel"] == "line"
    assert body["title"] == "生日禮"
    template_id = body["id"]
    bad = client.post("/api/v1/message-templates", headers=key, json={
        "name": "壞", "channel": "line", "text": "{name} 的 {points} 點"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "message_content_invalid"
    assert bad.json()["error"]["field"] == "text"
    assert "{points}" in bad.json()["error"]["message"]
    dup = client.post("/api/v1/message-templates", headers=key, json={
        "name": "生日", "channel": "sms", "text": "x"})
    assert dup.status_code == 422
    assert dup.json()["error"] == {"code": "message_template_invalid", "field": "name",
                                   "message": dup.json()["error"]["message"]}
    assert [t["id"] for t in client.get("/api/v1/message-templates", headers=key).json()] == \
        [template_id]
    assert client.get("/api/v1/message-templates?channel=sms", headers=key).json() == []
    changed = client.put(f"/api/v1/message-templates/{template_id}", headers=key, json={
        "name": "生日祝福", "channel": "sms", "text": "{name} 生日快樂"})
    assert changed.status_code == 200
    assert changed.json()["channel"] == "sms"
    assert changed.json()["title"] is None
    assert client.get(f"/api/v1/message-templates/{template_id}",
                      headers=key).json()["name"] == "生日祝福"

    other = make_tenant(session)
    other_key = bearer(make_api_key(session, other))
    for method in ("get", "delete"):
        answer = client.request(method.upper(), f"/api/v1/message-templates/{template_id}",
                                headers=other_key)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "message_template_not_found"
    assert client.put(f"/api/v1/message-templates/{template_id}", headers=other_key, json={
        "name": "x", "channel": "sms", "text": "x"}).status_code == 404
    assert client.get("/api/v1/message-templates", headers=other_key).json() == []

    cashier = bearer(make_api_key(session, tenant, scopes=["pos"]))
    assert client.get("/api/v1/message-templates", headers=cashier).status_code == 403
    assert client.post("/api/v1/message-templates", headers=cashier, json={
        "name": "x", "channel": "sms", "text": "x"}).status_code == 403

    assert client.delete(f"/api/v1/message-templates/{template_id}",
                         headers=key).status_code == 204
    assert client.get(f"/api/v1/message-templates/{template_id}",
                      headers=key).status_code == 404
    schema = client.get("/api/v1/openapi.json").json()
    send_in = schema["components"]["schemas"]["SendIn"]["properties"]
    assert "template_id" in send_in
    assert "copied" in send_in["template_id"]["description"]
    assert "message-templates-create" in {
        op["operationId"] for path in schema["paths"].values() for op in path.values()}


def test_a_send_from_a_template_keeps_its_copy(
        client: TestClient, database: Database, session: Session, tenant: Tenant,
        line: LineStandIn, dispatcher: Dispatcher) -> None:
    members = [make_member(session, tenant) for _ in range(2)]
    for index, member in enumerate(members):
        session.get_one(Customer, (tenant.id, member.id)).name = f"會員{index}"
    session.commit()
    key = bearer(make_api_key(session, tenant))
    template = client.post("/api/v1/message-templates", headers=key, json={
        "name": "拿鐵", "channel": "line", "text": HELLO}).json()
    base: dict[str, Any] = {"name": "本週拿鐵", "audience": {"kind": "channel"}}
    both = client.post("/api/v1/message-sends", headers=key, json=base | {
        "template_id": template["id"], "content": {"text": "hi"}, "channel": "line"})
    assert both.status_code == 422
    assert both.json()["error"]["code"] == "content_or_template_required"
    neither = client.post("/api/v1/message-sends", headers=key, json=base | {"channel": "line"})
    assert neither.json()["error"]["code"] == "content_or_template_required"
    other_channel = client.post("/api/v1/message-sends", headers=key, json=base | {
        "template_id": template["id"], "channel": "sms"})
    assert other_channel.status_code == 422
    assert other_channel.json()["error"]["field"] == "channel"
    missing = client.post("/api/v1/message-sends", headers=key, json=base | {
        "template_id": "nope"})
    assert missing.status_code == 404

    sent = client.post("/api/v1/message-sends", headers=key, json=base | {
        "template_id": template["id"]})
    assert sent.status_code == 201, sent.text
    assert sent.json()["channel"] == "line"
    assert dispatcher.drain().sent == 2
    texts = {r["body"]["to"]: r["body"]["messages"][0]["text"] for r in line.requests}
    assert texts == {members[0].line_user: "會員0 您好，本週拿鐵第二杯半價！",
                     members[1].line_user: "會員1 您好，本週拿鐵第二杯半價！"}

    # The template changes, then goes: the send and its messages keep what was sent.
    assert client.put(f"/api/v1/message-templates/{template['id']}", headers=key, json={
        "name": "拿鐵", "channel": "line", "text": "改過了 {name}"}).status_code == 200
    session.rollback()
    row = session.get_one(MessageSend, (tenant.id, sent.json()["id"]))
    assert row.content == {"text": HELLO}
    payloads = [m.payload for m in session.scalars(select(OutboxMessage).where(
        OutboxMessage.tenant_id == tenant.id, OutboxMessage.send_id == row.id))]
    assert sorted(p["messages"][0]["text"] for p in payloads) == [
        "會員0 您好，本週拿鐵第二杯半價！", "會員1 您好，本週拿鐵第二杯半價！"]
    assert client.delete(f"/api/v1/message-templates/{template['id']}",
                         headers=key).status_code == 204
    detail = client.get(f"/api/v1/message-sends/{row.id}", headers=key)
    assert detail.status_code == 200
    assert detail.json()["progress"]["sent"] == 2


def test_a_journey_message_copies_a_template_and_renders_the_variables(
        client: TestClient, database: Database, session: Session, tenant: Tenant) -> None:
    member = make_member(session, tenant)
    session.get_one(Customer, (tenant.id, member.id)).name = "陳先生"
    session.commit()
    key = bearer(make_api_key(session, tenant))
    template = client.post("/api/v1/message-templates", headers=key, json={
        "name": "想念", "channel": "line",
        "text": "{name}，好久不見！您的票夾：{wallet_url}"}).json()
    both = client.post("/api/v1/journeys", headers=key, json={
        "name": "想念您", "trigger": "no_visit", "actions": [
            {"kind": "message", "template_id": template["id"], "text": "x"}]})
    assert both.status_code == 422
    assert both.json()["error"]["field"] == "actions.0.template_id"
    unknown = client.post("/api/v1/journeys", headers=key, json={
        "name": "想念您", "trigger": "no_visit", "actions": [
            {"kind": "message", "channel": "line", "text": "{nickname} 好"}]})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "actions.0.text"
    created = client.post("/api/v1/journeys", headers=key, json={
        "name": "想念您", "trigger": "no_visit", "actions": [
            {"kind": "message", "template_id": template["id"]}]})
    assert created.status_code == 201, created.text
    assert created.json()["actions"] == [{"kind": "message", "channel": "line",
                                          "text": "{name}，好久不見！您的票夾：{wallet_url}"}]
    # A later change to the template does not reach the journey.
    client.put(f"/api/v1/message-templates/{template['id']}", headers=key, json={
        "name": "想念", "channel": "line", "text": "changed"})
    with database.unit_of_work() as work:
        journeys.enter(work, tenant.id, "no_visit", member.id, "no_visit:o1")
        journeys.run_due(work)
    session.rollback()
    journey = session.get_one(Journey, (tenant.id, created.json()["id"]))
    assert journey.actions[0]["text"].startswith("{name}，好久不見")
    message = session.scalars(select(OutboxMessage).where(
        OutboxMessage.tenant_id == tenant.id, OutboxMessage.customer_id == member.id)).one()
    text = message.payload["messages"][0]["text"]
    assert text.startswith("陳先生，好久不見！您的票夾：http")
    assert "/wallet" in text


# --- the pages ----------------------------------------------------------------------------


def test_template_pages(client: TestClient, session: Session, tenant: Tenant) -> None:
    _sign_in(client, session, tenant)
    listed = client.get("/admin/messaging/templates")
    assert listed.status_code == 200
    assert 'href="/admin/messaging/templates" aria-current="page"' in listed.text
    form = client.get("/admin/messaging/templates/new")
    assert form.status_code == 200
    token = csrf_from(form.text)
    data = {"csrf_token": token, "name": "週末快閃", "channel": "line", "text": HELLO}
    forged = client.post("/admin/messaging/templates/new", data=data | {"csrf_token": "x"})
    assert forged.status_code == 403
    bad = client.post("/admin/messaging/templates/new", data=data | {"text": "嗨 {oops}"})
    assert bad.status_code == 422
    assert 'id="error-text"' in bad.text
    assert "{oops}" in bad.text
    assert 'value="週末快閃"' in bad.text  # nothing typed is lost
    no_name = client.post("/admin/messaging/templates/new", data=data | {"name": " "})
    assert no_name.status_code == 422
    assert 'id="error-name"' in no_name.text
    preview = client.post("/admin/messaging/templates/preview", data=data)
    assert preview.status_code == 200
    assert "Staff marketer 您好，本週拿鐵第二杯半價！" in preview.text  # the signed-in staff
    wrong = client.post("/admin/messaging/templates/preview", data=data | {"text": "{oops}"})
    assert "field-error" in wrong.text
    assert client.post("/admin/messaging/templates/preview",
                       data=data | {"csrf_token": "x"}).status_code == 403
    session.rollback()
    assert session.scalars(select(MessageTemplate)).all() == []

    saved = client.post("/admin/messaging/templates/new", data=data, follow_redirects=False)
    assert saved.status_code == 303
    session.rollback()
    template = session.scalars(select(MessageTemplate).where(
        MessageTemplate.tenant_id == tenant.id)).one()
    page = client.get(saved.headers["location"])
    assert "週末快閃" in page.text
    edit = client.get(f"/admin/messaging/templates/{template.id}/edit")
    assert edit.status_code == 200
    assert "Staff marketer 您好" in edit.text  # the preview, rendered server-side too
    changed = client.post(f"/admin/messaging/templates/{template.id}/edit", data=data | {
        "channel": "email", "subject": "", "text": "hi"})
    assert changed.status_code == 422
    assert 'id="error-subject"' in changed.text
    english = client.get(f"/admin/messaging/templates/{template.id}/edit?lang=en")
    assert "Card title (LINE)" in english.text
    chinese = client.get("/admin/messaging/templates?lang=zh_TW")
    assert "訊息範本" in chinese.text

    # The send form starts from it: without JavaScript an empty text is filled in.
    send_form = client.get("/admin/messaging/sends/new")
    assert f'<option value="{template.id}"' in send_form.text
    filled = client.post("/admin/messaging/sends/new", data={
        "csrf_token": token, "name": "x", "channel": "sms", "audience": "channel",
        "template_id": template.id, "text": ""})
    assert filled.status_code == 200
    assert "本週拿鐵第二杯半價" in filled.text
    session.rollback()
    assert session.scalars(select(MessageSend)).all() == []

    template_id = template.id
    confirm = client.get(f"/admin/messaging/templates/{template_id}/delete")
    assert confirm.status_code == 200
    assert client.post(f"/admin/messaging/templates/{template_id}/delete",
                       data={"csrf_token": "x"}).status_code == 403
    deleted = client.post(f"/admin/messaging/templates/{template_id}/delete",
                          data={"csrf_token": csrf_from(confirm.text)}, follow_redirects=False)
    assert deleted.status_code == 303
    session.rollback()
    assert session.scalars(select(MessageTemplate)).all() == []
    assert session.scalar(select(AuditEntry.id).where(
        AuditEntry.action == "message_template.delete")) is not None
    assert client.get(f"/admin/messaging/templates/{template_id}/edit").status_code == 404


def test_journey_editor_copies_a_picked_template(client: TestClient, session: Session,
                                                 tenant: Tenant) -> None:
    template = templates.create_template(session, system_actor(tenant.id), name="生日",
                                         channel="email", subject="生日快樂",
                                         text="{name} 生日快樂！")
    session.commit()
    _sign_in(client, session, tenant)
    editor = client.get("/admin/messaging/journeys/new")
    assert 'name="action_template"' in editor.text
    saved = client.post("/admin/messaging/journeys/new", data={
        "csrf_token": csrf_from(editor.text), "name": "生日", "trigger": "birthday",
        "wait_value": "0", "wait_unit": "minutes", "action_kind": ["message"],
        "action_channel": ["line"], "action_text": [""], "action_template": [template.id]},
        follow_redirects=False)
    assert saved.status_code == 303, saved.text
    session.rollback()
    journey = session.scalars(select(Journey).where(Journey.tenant_id == tenant.id)).one()
    assert journey.actions == [{"kind": "message", "channel": "email", "subject": "生日快樂",
                                "text": "{name} 生日快樂！"}]


def test_cashiers_cannot_open_templates(client: TestClient, session: Session,
                                        tenant: Tenant) -> None:
    template = templates.create_template(session, system_actor(tenant.id), name="t",
                                         channel=OutboxChannel.sms, text="hi")
    session.commit()
    _sign_in(client, session, tenant, Role.cashier)
    assert client.get("/admin/messaging/templates").status_code == 403
    assert client.get(f"/admin/messaging/templates/{template.id}/edit").status_code == 403
    assert client.get("/admin/messaging/templates/new").status_code == 403
